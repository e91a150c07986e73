import { randomBytes } from 'node:crypto'
import type { Readable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { isFiledgeError, resolveConfig, type Destination, type Source, type SourceEntry } from '../../core/index.js'

/**
 * The source conformance kit (`filedge/testing`). Every built-in source runs
 * it against a real store (a temp directory, a loopback S3 or SFTP server);
 * a third-party source runs it the same way:
 *
 *   import { testSource } from 'filedge/testing'
 *   testSource({ name: 'mine', make: async () => { const store = await startStore(); return { source: mine({ url: store.url, pageSize: 2 }), put: store.put, remove: store.remove, pathOf: (key) => `mine://${key}`, cleanup: store.stop } } })
 *
 * What it checks is what the ingest loop relies on: every file listed once
 * (across pages, and with files appearing mid-listing), exact bytes, a new
 * version for new bytes, a file changed or removed between listing and
 * reading reported as such (so the core skips it instead of failing it), and
 * `archive` acting only on the version that was committed.
 */

export interface SourceHarness {
  /** A fresh source over an empty store. Give it a small page size (2) if it pages, so listings here span pages. */
  readonly source: Source
  /** Writes `bytes` at `key` (a `/`-separated path under the source's root: its folder, its key prefix), replacing what is there. */
  put(key: string, bytes: string | Buffer): Promise<void>
  remove(key: string): Promise<void>
  /** The entry path the source gives the file at `key`. */
  pathOf(key: string): string
  /** Whether a file exists at `key`. */
  exists(key: string): Promise<boolean>
  /** Whether the file once at `key` is where `archive(entry, { kind: 'move', to: 'archived/' })` moves it. */
  archived(key: string): Promise<boolean>
  /** Stop servers, remove directories. The source itself is closed by the kit. */
  cleanup?(): Promise<void>
}

export interface TestSourceOptions {
  readonly name: string
  make(): Promise<SourceHarness>
}

const none: Destination = {
  name: 'none',
  capabilities: { transactions: true, writeModes: ['append'] },
  describe: () => 'nowhere',
  prepare: async () => {},
  write: async () => ({ rows: 0 }),
}

async function listAll(source: Source, during?: (entry: SourceEntry) => Promise<void>): Promise<SourceEntry[]> {
  const entries: SourceEntry[] = []
  for await (const entry of source.list({ signal: new AbortController().signal, warn: () => {} })) {
    entries.push(entry)
    await during?.(entry)
  }
  return entries
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer))
  return Buffer.concat(chunks)
}

/** The error code a read failed with, whether `read` threw or the stream it returned errored. */
async function readError(source: Source, entry: SourceEntry): Promise<string | undefined> {
  try {
    await bytesOf(await source.read(entry, { signal: new AbortController().signal }))
    return undefined
  } catch (error) {
    return isFiledgeError(error) ? error.code : `not a FiledgeError: ${String(error)}`
  }
}

export function testSource(options: TestSourceOptions): void {
  describe(`source conformance: ${options.name}`, () => {
    let harness: SourceHarness | undefined
    const open = async () => {
      harness = await options.make()
      const config = resolveConfig({ pipelines: [{ name: 'kit', source: '.', destination: none, table: 't', columns: { id: 'string' } }] })
      await harness.source.connect?.({ config, logger: { debug() {}, info() {}, warn() {}, error() {} }, defaultInclude: ['**/*.csv'] })
      return harness
    }
    afterEach(async () => {
      await harness?.source.close?.()
      await harness?.cleanup?.()
      harness = undefined
    })

    it('lists each data file once, with its size, a version and its modification time; dotfiles and temporary names are not listed', async () => {
      const { source, put, pathOf } = await open()
      await put('a.csv', 'id\n1\n')
      await put('sub/b.csv', 'id\n22\n')
      await put('.hidden.csv', 'id\n3\n')
      await put('c.csv.tmp', 'id\n4\n')
      await put('notes.txt', 'not data')
      const entries = await listAll(source)
      expect(entries.map((entry) => entry.path).sort()).toEqual([pathOf('a.csv'), pathOf('sub/b.csv')].sort())
      const a = entries.find((entry) => entry.path === pathOf('a.csv'))!
      expect(a.size).toBe(5)
      expect(typeof a.version).toBe('string')
      expect(a.version.length).toBeGreaterThan(0)
      expect(Math.abs(a.modifiedAt - Date.now())).toBeLessThan(24 * 3600 * 1000)
    })

    it('lists every file exactly once across pages', async () => {
      const { source, put, pathOf } = await open()
      const keys = Array.from({ length: 9 }, (_, index) => `p/${String(index).padStart(2, '0')}.csv`)
      for (const key of keys) await put(key, `id\n${key}\n`)
      const paths = (await listAll(source)).map((entry) => entry.path)
      expect(paths.sort()).toEqual(keys.map(pathOf).sort())
    })

    it('lists a file that appears mid-listing by the next listing at the latest, and never twice', async () => {
      const { source, put, pathOf } = await open()
      for (const key of ['m/1.csv', 'm/2.csv', 'm/3.csv', 'm/4.csv']) await put(key, 'id\n1\n')
      let added = false
      const first = await listAll(source, async () => {
        if (!added) await put('m/0-late.csv', 'id\nlate\n')
        added = true
      })
      const second = await listAll(source)
      for (const listing of [first, second]) expect(new Set(listing.map((entry) => entry.path)).size).toBe(listing.length)
      expect(second.map((entry) => entry.path)).toContain(pathOf('m/0-late.csv'))
    })

    it('reads the exact bytes of a listed file', async () => {
      const { source, put, pathOf } = await open()
      const payload = Buffer.concat([Buffer.from('id\n'), randomBytes(3 * 1024 * 1024)])
      await put('big.csv', payload)
      const entry = (await listAll(source)).find((candidate) => candidate.path === pathOf('big.csv'))!
      expect(entry.size).toBe(payload.length)
      const read = await bytesOf(await source.read(entry, { signal: new AbortController().signal }))
      expect(read.equals(payload)).toBe(true)
    })

    it('gives a file overwritten with new bytes a new version', async () => {
      const { source, put } = await open()
      await put('v.csv', 'id\n1\n')
      const [before] = await listAll(source)
      await put('v.csv', 'id\n1\n2\n')
      const [after] = await listAll(source)
      expect(after.path).toBe(before.path)
      expect(after.size).toBe(7)
      expect(after.version).not.toBe(before.version)
    })

    it('reports a file overwritten between listing and reading: read refuses it (FILE_CHANGED), or stat gives the new version', async () => {
      const { source, put } = await open()
      await put('w.csv', 'id\n1\n')
      const [listed] = await listAll(source)
      await put('w.csv', 'id\n1\n2\n3\n')
      const code = await readError(source, listed)
      if (code === undefined) {
        expect(source.stat, 'read gave bytes of another version, and the source has no stat to tell').toBeDefined()
        const now = await source.stat!(listed.path)
        expect(now?.version).not.toBe(listed.version)
      } else {
        expect(code).toBe('FILE_CHANGED')
      }
    })

    it('reports a file removed between listing and reading as FILE_GONE (skipped, not failed), and stat as gone', async () => {
      const { source, put, remove } = await open()
      await put('gone.csv', 'id\n1\n')
      const [listed] = await listAll(source)
      await remove('gone.csv')
      expect(await readError(source, listed)).toBe('FILE_GONE')
      if (source.stat !== undefined) expect(await source.stat(listed.path)).toBeUndefined()
    })

    it('answers its healthcheck, reading nothing', async (context) => {
      const { source, put } = await open()
      if (source.healthcheck === undefined) {
        context.skip(`${options.name} has no healthcheck: filedge healthcheck lists it as unchecked`)
        return
      }
      await put('a.csv', 'id\n1\n')
      const config = resolveConfig({ pipelines: [{ name: 'kit', source: '.', destination: none, table: 't', columns: { id: 'string' } }] })
      await expect(source.healthcheck({ config, logger: { debug() {}, info() {}, warn() {}, error() {} }, defaultInclude: ['**/*.csv'] })).resolves.toBeUndefined()
      expect((await listAll(source)).length).toBe(1)
    })

    it('archives only the version that was listed, and is idempotent', async (context) => {
      const { source, put, exists, archived, pathOf } = await open()
      if (source.archive === undefined) {
        context.skip(`${options.name} has no archive: onCommitted 'delete' and { moveTo } are refused for it`)
        return
      }
      await put('done/x.csv', 'id\n1\n')
      await put('done/y.csv', 'id\n2\n')
      const listed = await listAll(source)
      const x = listed.find((entry) => entry.path === pathOf('done/x.csv'))!
      const y = listed.find((entry) => entry.path === pathOf('done/y.csv'))!
      await source.archive(x, { kind: 'delete' })
      expect(await exists('done/x.csv')).toBe(false)
      await expect(source.archive(x, { kind: 'delete' })).resolves.toEqual(expect.any(String))
      // New bytes arrived at y since it was listed: they are not the committed file, and stay.
      await put('done/y.csv', 'id\n2\n3\n')
      await source.archive(y, { kind: 'delete' })
      expect(await exists('done/y.csv')).toBe(true)
      const [fresh] = (await listAll(source)).filter((entry) => entry.path === pathOf('done/y.csv'))
      await source.archive(fresh, { kind: 'move', to: 'archived/' })
      expect(await exists('done/y.csv')).toBe(false)
      expect(await archived('done/y.csv')).toBe(true)
      await expect(source.archive(fresh, { kind: 'move', to: 'archived/' })).resolves.toEqual(expect.any(String))
    })
  })
}
