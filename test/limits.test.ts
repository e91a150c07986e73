import { PassThrough, Readable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULT_LIMITS } from '../core/config/limits.js'
import { resolveConfig } from '../core/config/resolve.js'
import type { UserConfig } from '../core/config/types.js'
import { MAX_MESSAGE_CHARS } from '../core/errors.js'
import { jsonArrayObjects, ndjsonObjects, type JsonObjects } from '../core/formats/json.js'
import { sqlite } from '../plugins/sqlite/index.js'
import { readLedger } from './helpers/invariants.js'
import { workspace, type Workspace } from './helpers/workspace.js'

/**
 * `limits`: how they resolve, and the parts of enforcing them a fixture folder
 * cannot show (streams that never end, chunk sizes, a plugin's error). The
 * files that break each limit are cases in test/fixtures/bad-input/.
 */

let ws: Workspace | undefined
afterEach(() => ws?.remove())

const MiB = 1024 * 1024
const destination = sqlite({ path: 'w.db' })
const pipeline = (name: string, extra: Record<string, unknown> = {}) => ({ name, source: 'incoming', destination, table: name, columns: { id: 'string' }, ...extra })
const resolve = (config: Record<string, unknown>) => resolveConfig(config as unknown as UserConfig)

describe('limits config', () => {
  it('resolves the defaults, then the top-level limits, then the pipeline’s, key by key; sizes may have units', () => {
    const config = resolve({
      limits: { maxRecordChars: 1000, parquetMaxFileBytes: '64MiB' },
      pipelines: [pipeline('a'), pipeline('b', { limits: { maxRecordChars: 5000, gzipRatioGraceBytes: '1.5KiB' } }), pipeline('c', { limits: { maxColumns: 10 } })],
    })
    expect(config.pipelines[0].limits).toEqual({ ...DEFAULT_LIMITS, maxRecordChars: 1000, parquetMaxFileBytes: 64 * MiB })
    expect(config.pipelines[1].limits).toEqual({ ...DEFAULT_LIMITS, maxRecordChars: 5000, parquetMaxFileBytes: 64 * MiB, gzipRatioGraceBytes: 1536 })
    expect(config.pipelines[2].limits).toEqual({ ...DEFAULT_LIMITS, maxRecordChars: 1000, parquetMaxFileBytes: 64 * MiB, maxColumns: 10 })
    expect(Object.isFrozen(config.pipelines[0].limits)).toBe(true)
    expect(resolve({ pipelines: [pipeline('a')] }).pipelines[0].limits).toEqual(DEFAULT_LIMITS)
  })

  it('takes a preset’s limits under the config’s own', () => {
    const preset = { name: 'big-files', limits: { maxRecordChars: 7, maxColumns: 3 } }
    const config = resolve({ presets: [preset], limits: { maxColumns: 4 }, pipelines: [pipeline('a')] })
    expect(config.pipelines[0].limits).toMatchObject({ maxRecordChars: 7, maxColumns: 4 })
  })

  it('refuses an unknown limit with a suggestion, a size in units it does not know, and a Parquet limit past what one buffer holds', () => {
    expect(() => resolve({ pipelines: [pipeline('a', { limits: { maxRecordBytes: 10 } })] })).toThrow('pipelines[0].limits.maxRecordBytes: unknown key; did you mean "maxRecordChars"?')
    expect(() => resolve({ limits: { parquetMaxRowGroupBytes: '64MB' }, pipelines: [pipeline('a')] })).toThrow('limits.parquetMaxRowGroupBytes: expected a number of bytes or a size like 512KiB, 64MiB or 2GiB')
    expect(() => resolve({ limits: { maxColumns: 0 }, pipelines: [pipeline('a')] })).toThrow('limits.maxColumns')
    // Said once, though both pipelines inherit it.
    expect(() => resolve({ limits: { parquetMaxFileBytes: '8GiB' }, pipelines: [pipeline('a'), pipeline('b')] })).toThrow(
      /^invalid config: limits\.parquetMaxFileBytes: at most 4 GiB, the largest buffer Node can hold a Parquet file in$/,
    )
  })
})

/**
 * `text` as a stream of `size`-byte chunks, the way a slow pipe delivers it:
 * each chunk in a later turn of the event loop (so a reader that cannot keep
 * up runs into the test's timeout instead of starving it).
 */
function chunked(text: string, size: number): Readable {
  const bytes = Buffer.from(text)
  return Readable.from(
    (async function* () {
      for (let at = 0; at < bytes.length; at += size) {
        await new Promise(setImmediate)
        yield bytes.subarray(at, at + size)
      }
    })(),
  )
}

async function all(reader: AsyncGenerator<JsonObjects>): Promise<Record<string, unknown>[]> {
  const objects: Record<string, unknown>[] = []
  for await (const batch of reader) objects.push(...batch.objects)
  return objects
}

describe('long JSON records', () => {
  // 65,536 chunks of 64 bytes. Appending each chunk to the pending text and searching it all again copied
  // about 128 GB here: this did not finish within the test's timeout. Read incrementally, it takes well under a second.
  const long = 'x'.repeat(4 * MiB)

  it('an NDJSON line spanning thousands of chunks is read in time linear in its length', async () => {
    const objects = await all(ndjsonObjects(chunked(`{"id":"a"}\n{"id":"${long}"}\n{"id":"c"}`, 64), 'long.ndjson'))
    expect(objects.map((object) => (object.id as string).length)).toEqual([1, long.length, 1])
  })

  it('so is a JSON array element, escapes split across chunks included', async () => {
    const objects = await all(jsonArrayObjects(chunked(`[{"id":"a\\\\"},\n{"id":"${long}\\""}, {"id":"c"}]`, 64), 'long.json'))
    expect(objects.map((object) => object.id)).toEqual(['a\\', `${long}"`, 'c'])
  })

  it('fails a record as soon as it passes the limit, without waiting for its end', async () => {
    for (const [read, what] of [
      [ndjsonObjects, 'line is longer than 1,048,576 characters; raise limits.maxRecordChars'],
      [jsonArrayObjects, 'array element is longer than 1,048,576 characters; raise limits.maxRecordChars'],
    ] as const) {
      const stream = new PassThrough()
      const objects = all(read(stream, 'endless', 1000, MiB))
      stream.write(read === ndjsonObjects ? '{"id":"a"}\n{"id":"b"}\n{"id":"' : '[{"id":"a"},\n{"id":"b"},\n{"id":"')
      // 2 MiB of one record, and the stream never ends: the limit must be what stops the reader.
      for (let i = 0; i < 32; i++) stream.write('x'.repeat(64 * 1024))
      await expect(objects).rejects.toThrow(`endless:3: ${what}`)
      stream.destroy()
    }
  })
})

describe('limits in a run', () => {
  it('a pipeline’s own limit overrides the top-level one, and only the file past its limit fails', async () => {
    const line = (id: string, length: number) => `{"id":"${id}${'x'.repeat(length)}"}\n`
    ws = workspace({
      'filedge.config.ts': `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
const destination = sqlite({ path: 'warehouse.db' })
export default defineConfig({
  limits: { maxRecordChars: 100 },
  pipelines: [
    { name: 'strict', source: 'strict', destination, table: 'strict', columns: { id: 'string' } },
    { name: 'roomy', source: 'roomy', destination, table: 'roomy', columns: { id: 'string' }, limits: { maxRecordChars: 1000 } },
  ],
})
`,
      'strict/long.ndjson': line('a', 500),
      'strict/short.ndjson': line('b', 10),
      'roomy/long.ndjson': line('c', 500),
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('✗ strict strict/long.ndjson:1: line is longer than 100 characters; raise limits.maxRecordChars if the file is genuine')
    expect(ws.query('.filedge/ledger.db', 'SELECT pipeline, path, state FROM files ORDER BY pipeline, path')).toEqual([
      { pipeline: 'roomy', path: 'roomy/long.ndjson', state: 'COMMITTED' },
      { pipeline: 'strict', path: 'strict/long.ndjson', state: 'FAILED' },
      { pipeline: 'strict', path: 'strict/short.ndjson', state: 'COMMITTED' },
    ])
  })

  it('a failure whose text is megabytes (a plugin quoting a whole row) is cut to MAX_MESSAGE_CHARS in the ledger and in the reporters, alike', async () => {
    ws = workspace({
      'filedge.config.ts': `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
export default defineConfig({
  plugins: [{ name: 'quoter', apply({ hooks }) {
    hooks.transform.tapPromise('quoter', async (batches, { file }) => {
      if (file.path.endsWith('boom.csv')) throw new Error('cannot use row ' + 'v'.repeat(1_000_000))
      return batches
    })
  } }],
  pipelines: [{ name: 'p', source: 'incoming', destination: sqlite({ path: 'warehouse.db' }), table: 't', columns: { id: 'string' } }],
})
`,
      'incoming/boom.csv': 'id\na\n',
      'incoming/fine.csv': 'id\nb\n',
    })
    const result = await ws.cli(['--json'])
    expect(result.code).toBe(1)
    const ledger = readLedger(ws.dir)
    const failed = ledger.files.find((file) => file.path === 'incoming/boom.csv')!
    expect(failed.state).toBe('FAILED')
    expect(failed.error).toMatch(/^plugin "quoter" failed in transform for incoming\/boom\.csv: cannot use row v+… \(message cut: 1000074 characters in all\)$/)
    expect(failed.error!.length).toBeLessThanOrEqual(MAX_MESSAGE_CHARS)
    for (const event of ledger.events) expect(event.error?.length ?? 0).toBeLessThanOrEqual(MAX_MESSAGE_CHARS)
    const events = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as { event: string; error?: { message: string } })
    expect(events.find((event) => event.event === 'file:failed')?.error?.message).toBe(failed.error)
    expect(ledger.files.find((file) => file.path === 'incoming/fine.csv')?.state).toBe('COMMITTED')
  })
})
