import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { directHash, hashOpenFile } from '../core/source/hash.js'
import { localSource } from '../core/source/local.js'
import { readAhead } from '../core/source/read-ahead.js'
import { workspace, type Workspace } from './helpers/workspace.js'

/**
 * A large local file is hashed in place (positional reads into two buffers,
 * the next read while the last chunk is hashed) instead of through the read
 * stream its source hands out: the identity must be the SHA-256 of exactly
 * the file's bytes, whatever its size against the 1 MiB reads.
 */

const MIB = 1024 * 1024
const dirs: string[] = []
const workspaces: Workspace[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
  for (const ws of workspaces.splice(0)) ws.remove()
})

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

describe('hashing a local file in place', () => {
  it('gives the SHA-256 and size of exactly the bytes, at every size around the 1 MiB reads', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-hash-'))
    dirs.push(dir)
    for (const size of [0, 1, MIB - 1, MIB, MIB + 1, 2 * MIB, 3 * MIB + 12_345]) {
      const bytes = randomBytes(size)
      const file = path.join(dir, `f${size}`)
      writeFileSync(file, bytes)
      const handle = await open(file, 'r')
      try {
        expect(await hashOpenFile(handle), `${size} bytes`).toEqual({ hash: sha256(bytes), size })
      } finally {
        await handle.close()
      }
    }
  })

  it('reading ahead stops at the first chunk its handler refuses, and the error reaches the caller', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-hash-'))
    dirs.push(dir)
    const file = path.join(dir, 'f')
    writeFileSync(file, randomBytes(5 * 1024))
    const handle = await open(file, 'r')
    const seen: number[] = []
    try {
      await expect(
        readAhead(handle, 1024, (chunk) => {
          seen.push(chunk.length)
          if (seen.length === 2) throw new Error('no more')
        }),
      ).rejects.toThrow('no more')
    } finally {
      await handle.close()
    }
    expect(seen).toEqual([1024, 1024])
  })

  it("the local source's stream of a large file says how to hash it in place, and the answer is its bytes' hash; a wrapped stream does not", async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'filedge-hash-'))
    dirs.push(root)
    mkdirSync(path.join(root, 'in'))
    const bytes = Buffer.from(`id,note\n${Array.from({ length: 60_000 }, (_, i) => `${i},row ${i} ${'é'.repeat(i % 13)}`).join('\n')}\n`)
    expect(bytes.length).toBeGreaterThan(MIB)
    writeFileSync(path.join(root, 'in/big.csv'), bytes)
    writeFileSync(path.join(root, 'in/small.csv'), 'id,note\n1,a\n')
    const source = localSource({ dir: path.join(root, 'in'), root, include: ['**/*.csv'], exclude: [], followSymlinks: 'inside' })
    const entries = []
    for await (const entry of source.list({ signal: new AbortController().signal, warn: () => {} })) entries.push(entry)
    const big = entries.find((entry) => entry.path.endsWith('big.csv'))!
    const small = entries.find((entry) => entry.path.endsWith('small.csv'))!

    const stream = await source.read(big, { signal: new AbortController().signal })
    const hash = directHash(stream)
    expect(hash).toBeTypeOf('function')
    expect(await hash!()).toEqual({ hash: sha256(bytes), size: bytes.length })
    stream.destroy()
    // A tap that wrapped the stream (to keep a copy, to decrypt) is read as a stream: what it hands on is what gets hashed.
    expect(directHash((await source.read(big, { signal: new AbortController().signal })).pipe(new PassThrough()))).toBeUndefined()
    // A small file is read whole, in memory, for the load.
    expect(directHash(await source.read(small, { signal: new AbortController().signal }))).toBeUndefined()
    await source.close?.()
  })

  it('a large local file loads under the SHA-256 of its bytes, every row with it', async () => {
    const rows = Array.from({ length: 50_000 }, (_, i) => `${i},${'x'.repeat(20 + (i % 7))}`)
    const csv = `id,note\n${rows.join('\n')}\n`
    expect(Buffer.byteLength(csv)).toBeGreaterThan(MIB)
    const ws = workspace({
      'filedge.config.ts': `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
export default defineConfig({ pipelines: [{ name: 'notes', source: { dir: 'incoming' }, destination: sqlite({ path: 'warehouse.db' }), table: 'notes', columns: { id: 'integer', note: 'string' } }] })
`,
      'incoming/notes.csv': csv,
    })
    workspaces.push(ws)
    const run = await ws.cli(['--json'])
    expect(run.code, run.stdout + run.stderr).toBe(0)
    expect(ws.query('warehouse.db', 'SELECT count(*) AS n, count(DISTINCT _source_file_hash) AS hashes, min(_source_file_hash) AS hash FROM notes')).toEqual([
      { n: 50_000, hashes: 1, hash: sha256(readFileSync(ws.file('incoming/notes.csv'))) },
    ])
  })
})
