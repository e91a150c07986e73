import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { PassThrough, Transform, type Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { describeError, detectFormat, RACY_MS, type FileRef, type Plugin, type ResolvedFormat, type ResolvedPipeline, type RowBatch, type SourceEntry } from '../../core/index.js'
import { batchEncoder, headerFrame, readBatches } from './batches.js'
import { refused } from './codec.js'
import { createCache, type CreateCacheOptions } from './store.js'
import type { BuiltinCache, Cache, CacheOptions } from './types.js'

/**
 * The cache as a filedge plugin. Two `pre` taps, each can be turned off:
 *
 * - `batches`: a file's parsed and coerced rows are kept while they are
 *   loaded; when its destination fails after parsing (a timeout, a lock, a
 *   dropped connection), the retry replays them instead of reading and
 *   parsing the file again. Kept before `transform`, so any transform runs
 *   again on the replay and stays correct whatever its code. Keyed by the
 *   file's hash, its format and columns, and filedge's version; dropped
 *   once the file commits (or fails for good) unless `keep` is set.
 * - `sourceBytes`: the bytes of files from remote sources (S3, SFTP) are
 *   kept, keyed by the source, path and version, so a retry, a rerun after
 *   a crash or a second pipeline on the same file reads them locally.
 */
export interface CachePluginOptions extends CacheOptions {
  /** The cache directory, relative to the config's directory. Default `.filedge/cache`. */
  readonly dir?: string
  /** A cache on S3-compatible storage instead of a directory, shared by workers on many machines. */
  readonly s3?: Extract<CreateCacheOptions, { s3: unknown }>['s3']
  /**
   * Keep parsed batches for retries. Default true. `keep: true` keeps them
   * after the commit too (until TTL or eviction); `minBytes` (default 1 MiB)
   * leaves smaller files out, which parse again in less time than keeping
   * their rows takes.
   */
  readonly batches?: boolean | { readonly keep?: boolean; readonly minBytes?: number }
  /** Keep remote files' bytes. Default true. */
  readonly sourceBytes?: boolean
}

export interface CachePlugin extends Plugin {
  /** The cache the plugin uses, for a config whose directory is `root` (`filedge cache stats` opens it). */
  open(root: string): Cache
}

const DEFAULTS = { dir: '.filedge/cache', maxBytes: 5 * 1024 ** 3, ttl: '7d' } as const

/** Files smaller than this parse again faster than their rows are kept and replayed (a temp file, a rename and a delete per file). */
const DEFAULT_MIN_BYTES = 1024 * 1024

/** How long the end of a run waits for the cache's writes in progress before closing it (which abandons them). */
const CLOSE_WAIT_MS = 30_000

const OPTION_NAMES = new Set(['dir', 's3', 'maxEntries', 'maxBytes', 'ttl', 'compress', 'batches', 'sourceBytes'])

let filedgeVersion: string | undefined
/** filedge's version: coercion may change between versions, so batches coerced by another are not replayed. */
function version(): string {
  if (filedgeVersion !== undefined) return filedgeVersion
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json')
    if (existsSync(manifest)) {
      const parsed = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version?: string }
      if (parsed.name === 'filedge') return (filedgeVersion = parsed.version ?? 'unknown')
    }
    if (path.dirname(dir) === dir) return (filedgeVersion = 'unknown')
  }
}

function digest(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex')
}

/** What a file's coerced rows depend on: its bytes, how they are parsed and coerced, and by which filedge. */
function batchesKey(pipeline: ResolvedPipeline, hash: string, format: ResolvedFormat): string {
  return `filedge:batches:${digest([version(), hash, format, pipeline.columns, pipeline.unknownColumns])}`
}

/**
 * A stage's output for a file: the file's bytes, how they were parsed (the
 * format, or the extension that picks it), the columns, and the stage's hash,
 * which covers its code and every stage before it.
 */
function stageKey(pipeline: ResolvedPipeline, file: FileRef, hash: string): string {
  const extension = /(\.[^./\\]+)+$/.exec(file.path.toLowerCase())?.[0] ?? ''
  return `filedge:stage:${digest([version(), file.hash, pipeline.format ?? extension, pipeline.columns, pipeline.unknownColumns, hash])}`
}

/**
 * Where a remote file's bytes came from, exactly: the source, the path and
 * the version the source gave them. An mtime vouches for the bytes only once
 * the file is RACY_MS old (a same-size rewrite within the filesystem's
 * granularity keeps it); an exact version (an ETag) always does.
 */
function sourceKey(pipeline: ResolvedPipeline, entry: SourceEntry): string | undefined {
  const source = pipeline.source
  if (typeof source.localPath === 'function') return undefined
  if (source.capabilities?.exactVersions !== true && entry.modifiedAt > Date.now() - RACY_MS) return undefined
  return `filedge:source:${digest([source.name, source.describe(), entry.path, entry.version, entry.size])}`
}

function checkOptions(options: CachePluginOptions): void {
  if (typeof options !== 'object' || options === null) throw refused('cache(): expected options ({ dir: ".filedge/cache" })')
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw refused(`cache.${name}: unknown option (expected one of ${[...OPTION_NAMES].join(', ')})`)
  }
  if (options.dir !== undefined && options.s3 !== undefined) throw refused('cache: set dir or s3, not both')
  const { batches, sourceBytes } = options
  if (batches !== undefined && typeof batches !== 'boolean') {
    if (typeof batches !== 'object' || batches === null) throw refused('cache.batches: expected true, false or { keep, minBytes }')
    for (const name of Object.keys(batches)) if (name !== 'keep' && name !== 'minBytes') throw refused(`cache.batches.${name}: unknown option (expected keep or minBytes)`)
    if (batches.keep !== undefined && typeof batches.keep !== 'boolean') throw refused('cache.batches.keep: expected true or false')
    if (batches.minBytes !== undefined && !(Number.isInteger(batches.minBytes) && batches.minBytes >= 0)) throw refused(`cache.batches.minBytes: expected a whole number of bytes; got ${String(batches.minBytes)}`)
  }
  if (sourceBytes !== undefined && typeof sourceBytes !== 'boolean') throw refused('cache.sourceBytes: expected true or false')
}

export function cache(options: CachePluginOptions = {}): CachePlugin {
  checkOptions(options)
  const { dir, s3, batches = true, sourceBytes = true, ...limits } = options
  const settings = { maxBytes: DEFAULTS.maxBytes, ttl: DEFAULTS.ttl, ...limits }
  const keepBatches = typeof batches === 'object' && batches.keep === true
  const minBytes = (typeof batches === 'object' ? batches.minBytes : undefined) ?? DEFAULT_MIN_BYTES
  const stores = new Map<string, BuiltinCache>()
  const open = (root: string): BuiltinCache => {
    const location = s3 === undefined ? path.resolve(root, dir ?? DEFAULTS.dir) : 's3'
    let store = stores.get(location)
    if (store === undefined) {
      store = s3 === undefined ? createCache({ ...settings, dir: location }) : createCache({ ...settings, s3 })
      stores.set(location, store)
    }
    return store
  }
  return {
    name: 'filedge:cache',
    enforce: 'pre',
    open,
    apply({ hooks, config, logger }) {
      const store = open(config.root)
      const warn = (what: string, error: unknown) => logger.warn(`${what}: ${describeError(error)} (the file loads as if there were no cache)`)
      /** Writes in progress, by cache key: a read of the same key waits for its write, and the run's end for all of them. */
      const writes = new Map<string, Promise<unknown>>()
      const track = (key: string, writing: Promise<unknown>) => {
        writes.set(key, writing)
        void writing.finally(() => writes.get(key) === writing && writes.delete(key))
      }
      /**
       * Rows kept under `key`, once any write of it in progress is done. Every byte is checked before a single row is handed
       * on: damaged rows are a miss (the file is parsed, the stages run), never half a replay.
       */
      const replay = async (key: string, what: string, file: FileRef): Promise<AsyncIterable<RowBatch> | undefined> => {
        await writes.get(key)
        try {
          const reader = await store.getReader(key)
          if (reader === undefined) return undefined
          // The header and the first batch are read here: rows kept in a format this filedge cannot read are a miss too.
          const batches = readBatches(reader)
          const first = await batches.next().catch(async (error: unknown) => {
            await store.delete(key).catch(() => undefined)
            throw error
          })
          logger.info(`${file.path}: ${what} read from the cache`)
          return withFirst(first, batches)
        } catch (error) {
          warn(`${file.path}: ${what} could not be read from the cache`, error)
          return undefined
        }
      }
      /** Batch entries a load wrote or replayed, by pipeline and hash, with the write still in progress. */
      const used = new Map<string, { key: string; writing?: Promise<unknown> }>()
      const fileKey = (pipeline: ResolvedPipeline, hash: string) => `${pipeline.name}\u0000${hash}`
      /**
       * A file done with (committed, or failed for good): the parsed rows its load wrote or replayed are dropped. So are those
       * an earlier attempt kept and this load left unread, its stages' output read from kept outputs instead (`unread`: the
       * file's path, which tells its format; only a pipeline with kept stages reads them so).
       */
      const drop = async (pipeline: ResolvedPipeline, hash: string, unread?: string) => {
        const entry = used.get(fileKey(pipeline, hash))
        if (entry === undefined) {
          if (keepBatches || unread === undefined || pipeline.quarantine !== undefined || !pipeline.stages.some((stage) => stage.cache)) return
          const format = pipeline.format ?? detectFormat(unread)
          if (format !== undefined) await store.delete(batchesKey(pipeline, hash, format)).catch((error: unknown) => warn('dropping cached rows failed', error))
          return
        }
        used.delete(fileKey(pipeline, hash))
        if (keepBatches) return
        await entry.writing
        await store.delete(entry.key).catch((error: unknown) => warn('dropping cached rows failed', error))
      }

      if (batches !== false) {
        hooks.load.tapPromise({ name: 'filedge:cache', stage: -100 }, async ({ pipeline, file, format, validating }) => {
          // A quarantine writes its sidecar while the file's records are coerced: every attempt reads the file.
          if (validating === true || pipeline.quarantine !== undefined) return undefined
          const key = batchesKey(pipeline, file.hash, format)
          const replayed = await replay(key, 'its parsed rows', file)
          if (replayed === undefined) return undefined
          used.set(fileKey(pipeline, file.hash), { key })
          return { replayed }
        })
        hooks.parsedRows.tap('filedge:cache', (rows, { pipeline, file, format }) => {
          if (file.size < minBytes || pipeline.quarantine !== undefined) return rows
          const key = batchesKey(pipeline, file.hash, format)
          const entry: { key: string; writing?: Promise<unknown> } = { key }
          used.set(fileKey(pipeline, file.hash), entry)
          return record(rows, store, key, (writing) => {
            entry.writing = writing
            track(key, writing)
          }, (error) => warn(`${file.path}: keeping its parsed rows failed`, error))
        })
        hooks.afterCommit.tapPromise('filedge:cache', ({ pipeline, file }) => drop(pipeline, file.hash, file.size < minBytes ? undefined : file.path))
        // A file released (the run stopped, the destination stayed locked) keeps its rows for the next attempt.
        hooks.fileSkipped.tap('filedge:cache', ({ pipeline, hash }) => {
          if (hash !== undefined) used.delete(fileKey(pipeline, hash))
        })
        hooks.fileFailed.tapPromise('filedge:cache', async ({ pipeline, path, hash, terminal }) => {
          if (hash === undefined) return
          if (terminal) await drop(pipeline, hash, path)
          else used.delete(fileKey(pipeline, hash))
        })
      }

      // Outputs of stages declared `cache: true`: kept until TTL or eviction (a reload after an edit of a later stage reads them).
      hooks.stageRows.tapPromise('filedge:cache', ({ pipeline, file, stage, hash }) => replay(stageKey(pipeline, file, hash), `the output of stage "${stage}"`, file))
      hooks.stageOutput.tap('filedge:cache', (rows, { pipeline, file, stage, hash }) => {
        const key = stageKey(pipeline, file, hash)
        return record(rows, store, key, (writing) => track(key, writing), (error) => warn(`${file.path}: keeping the output of stage "${stage}" failed`, error))
      })

      if (sourceBytes !== false) {
        const served = new WeakSet<Readable>()
        hooks.read.tapPromise({ name: 'filedge:cache', stage: -100 }, async ({ pipeline, entry }) => {
          const key = sourceKey(pipeline, entry)
          if (key === undefined) return undefined
          await writes.get(key)
          try {
            // Kept only when exactly entry.size bytes arrived, and the size is part of the key. Checked whole first (a local
            // read, cheap beside a download): a damaged copy is a miss and the source is read.
            const stream = await store.getStream(key, { verify: true })
            if (stream !== undefined) served.add(stream)
            return stream
          } catch (error) {
            warn(`${entry.path}: the cached copy could not be read`, error)
            return undefined
          }
        })
        hooks.sourceBytes.tap('filedge:cache', (stream, { pipeline, entry }) => {
          if (served.has(stream)) return stream
          const key = sourceKey(pipeline, entry)
          if (key === undefined) return stream
          return keepCopy(stream, entry.size, store, key, (writing) => track(key, writing), (error) => warn(`${entry.path}: keeping a local copy failed`, error))
        })
      }

      hooks.close.tapPromise('filedge:cache', async () => {
        // Entries whose bytes all arrived are finishing their last writes: they are kept, unless one hangs past a bound.
        let timer: NodeJS.Timeout | undefined
        await Promise.race([Promise.all(writes.values()), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS)))])
        clearTimeout(timer)
        for (const opened of stores.values()) await opened.close()
        stores.clear()
      })
    },
  }
}

/** Waits for the sink to drain, unless its writer has stopped reading (it failed). */
function drained(sink: PassThrough, writing: Promise<unknown>): Promise<unknown> {
  return Promise.race([new Promise((resolve) => sink.once('drain', resolve)), writing])
}

/**
 * The rows, passed on unchanged while a copy goes to the cache. The entry
 * is written only if every batch went through (a bad row, a destination
 * that stops reading, a stop: nothing is kept); a cache that fails stops
 * being written to and never fails the load.
 */
async function* record(rows: AsyncIterable<RowBatch>, store: Cache, key: string, onWrite: (writing: Promise<unknown>) => void, onError: (error: unknown) => void): AsyncGenerator<RowBatch> {
  const sink = new PassThrough({ highWaterMark: 1024 * 1024 })
  let failed = false
  const writing = store.setStream(key, sink).catch((error: unknown) => {
    if (!failed && !sink.destroyed) onError(error)
    failed = true
  })
  onWrite(writing)
  let complete = false
  let started = false
  const encode = batchEncoder()
  const write = async (frames: Buffer[]) => {
    for (const frame of frames) {
      if (failed) return
      if (!sink.write(frame)) await drained(sink, writing)
    }
  }
  try {
    for await (const batch of rows) {
      if (!started) {
        started = true
        await write(headerFrame(batch.columns))
      }
      await write(encode(batch))
      yield batch
    }
    complete = started
  } finally {
    if (complete && !failed) sink.end()
    else {
      failed = true
      sink.destroy(new Error('the rows did not all go through'))
    }
  }
}

/**
 * The source's bytes, passed on unchanged while a copy goes to the cache;
 * kept only if exactly `size` bytes arrived and the stream ended cleanly.
 */
function keepCopy(stream: Readable, size: number, store: Cache, key: string, onWrite: (writing: Promise<unknown>) => void, onError: (error: unknown) => void): Readable {
  const sink = new PassThrough({ highWaterMark: 1024 * 1024 })
  let failed = false
  let received = 0
  const writing = store.setStream(key, sink).catch((error: unknown) => {
    if (!failed) onError(error)
    failed = true
  })
  onWrite(writing)
  const abandon = () => {
    if (failed) return
    failed = true
    sink.destroy(new Error('the download did not complete'))
  }
  const copy = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length
      if (failed || sink.write(chunk)) return done(null, chunk)
      void drained(sink, writing).then(() => done(null, chunk))
    },
    flush(done) {
      if (received === size && !failed) sink.end()
      else abandon()
      done()
    },
    destroy(error, done) {
      if (!sink.writableEnded) abandon()
      stream.destroy()
      done(error)
    },
  })
  stream.once('error', (error) => copy.destroy(error))
  return stream.pipe(copy)
}

/**
 * The batches of a replay whose first was read to check it: that one, then
 * the rest, as an iterator of its own rather than a generator, which would
 * put one more await between each batch and the destination. Left unread or
 * part read (a stage's kept output that was not needed), `return` closes the
 * cache's file.
 */
function withFirst(first: IteratorResult<RowBatch>, rest: AsyncGenerator<RowBatch>): AsyncIterable<RowBatch> {
  let held: IteratorResult<RowBatch> | undefined = first
  const iterator: AsyncIterator<RowBatch> = {
    next() {
      if (held === undefined) return rest.next()
      const result = held
      held = undefined
      return Promise.resolve(result)
    },
    async return() {
      held = undefined
      await rest.return(undefined)
      return { done: true, value: undefined }
    },
  }
  return { [Symbol.asyncIterator]: () => iterator }
}
