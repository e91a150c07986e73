import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { localSource } from '../core/source/local.js'
import { testSource } from './conformance/source.js'

// The built-in source passes the kit it asks of others: a directory `in` under a project root.
testSource({
  name: 'local',
  async make() {
    const root = mkdtempSync(path.join(os.tmpdir(), 'filedge-local-source-'))
    const dir = path.join(root, 'in')
    mkdirSync(dir)
    const at = (key: string) => path.join(dir, key)
    return {
      source: localSource({ dir, root, include: ['**/*.csv'], exclude: [], followSymlinks: 'inside' }),
      async put(key, bytes) {
        mkdirSync(path.dirname(at(key)), { recursive: true })
        // A rename, as producers do: a new inode, so even a same-size rewrite within one mtime tick has a new version.
        writeFileSync(`${at(key)}.partial`, bytes)
        renameSync(`${at(key)}.partial`, at(key))
      },
      async remove(key) {
        rmSync(at(key))
      },
      pathOf: (key) => `in/${key}`,
      exists: async (key) => existsSync(at(key)),
      archived: async (key) => existsSync(path.join(root, 'archived', key)),
      async cleanup() {
        rmSync(root, { recursive: true, force: true })
      },
    }
  },
})
