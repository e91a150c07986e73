import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { SymlinkPolicy } from '../core/config/types.js'
import { localSource } from '../core/source/local.js'
import type { SourceEntry } from '../core/source.js'

/**
 * Patterns that only name files of the source directory itself (`*.csv`)
 * are listed by one read of the directory instead of fast-glob's walk
 * (core/source/local.ts). The same directory listed both ways must give the
 * same files and the same warnings: every kind of entry a drop folder holds,
 * links in and out of it included. A second pattern that names nothing
 * (`none/**`) makes the second listing fast-glob's.
 */

let root: string | undefined
afterEach(() => {
  if (root !== undefined) rmSync(root, { recursive: true, force: true })
})

async function listed(dir: string, include: string[], followSymlinks: SymlinkPolicy): Promise<{ paths: string[]; sizes: number[]; warnings: string[] }> {
  const source = localSource({ dir, root: root!, include, exclude: ['skip-*.csv'], followSymlinks })
  const warnings: string[] = []
  const entries: SourceEntry[] = []
  for await (const entry of source.list({ signal: new AbortController().signal, warn: (message) => void warnings.push(message) })) entries.push(entry)
  return { paths: entries.map((entry) => entry.path), sizes: entries.map((entry) => entry.size), warnings: warnings.sort() }
}

describe('listing a directory by its names', () => {
  for (const followSymlinks of ['inside', 'all'] as const) {
    it(`lists what fast-glob lists, with the same warnings (followSymlinks: '${followSymlinks}')`, async () => {
      root = mkdtempSync(path.join(os.tmpdir(), 'filedge-listing-'))
      const dir = path.join(root, 'in')
      const outside = path.join(root, 'outside')
      mkdirSync(path.join(dir, 'sub'), { recursive: true })
      mkdirSync(path.join(dir, 'folder.csv'))
      mkdirSync(outside)
      writeFileSync(path.join(outside, 'secret.csv'), 'a\n1\n')
      mkdirSync(path.join(outside, 'dir'))
      for (const name of ['a.csv', 'b.CSV', 'c.tsv', '.hidden.csv', 'skip-me.csv', 'draft.csv.tmp', '~$lock.csv', 'sub/deep.csv']) writeFileSync(path.join(dir, name), `x\n${name}\n`)
      symlinkSync(path.join(dir, 'a.csv'), path.join(dir, 'inside-link.csv'))
      symlinkSync(path.join(outside, 'secret.csv'), path.join(dir, 'outside-link.csv'))
      symlinkSync(path.join(outside, 'dir'), path.join(dir, 'outside-dir'))
      symlinkSync(path.join(dir, 'missing.csv'), path.join(dir, 'broken.csv'))

      const byNames = await listed(dir, ['*.csv', '*.tsv'], followSymlinks)
      const byGlob = await listed(dir, ['*.csv', '*.tsv', 'none/**'], followSymlinks)
      expect(byNames).toEqual(byGlob)
      expect(byNames.paths).toEqual(followSymlinks === 'inside' ? ['in/a.csv', 'in/c.tsv', 'in/inside-link.csv'] : ['in/a.csv', 'in/c.tsv', 'in/inside-link.csv', 'in/outside-link.csv'])
    })
  }
})
