import { constants } from 'node:buffer'
import { createHash, randomUUID } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PassThrough, Readable, Transform } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { pipeline } from 'node:stream/promises'
import type * as S3 from '@aws-sdk/client-s3'
import { FiledgeError, isFiledgeError } from '../../core/index.js'
import { isMissing, isNotImplemented, isPreconditionFailed, s3Error } from '../s3/errors.js'
import { asFolder, buildClient, checkLocation, loadSdk, type S3ClientLike, type S3Location, type Sdk } from '../s3/index.js'
import { cacheError, compressionOf, compressor, decodeValue, encodeValue, keyName, refused, ttlMs } from './codec.js'
import { streamReader } from './reader.js'
import { checkedValue, infoOf, judge, metadataOf, type Entry } from './s3-entry.js'
import type { BuiltinCache, Cache, CacheDuration, CacheOptions, CacheValue, Compression, PruneResult, SetOptions, ValueType } from './types.js'

/**
 * The cache in an S3 bucket (or an S3-compatible store), so workers on many
 * machines share it. An entry is one object, `<prefix>/<SHA-256 of the key>`
 * (only such names directly under the prefix are read or removed), and its
 * description (s3-entry.ts) is the object's user metadata, written by the
 * same PUT as its bytes. PUTs are atomic: a reader gets a whole old entry or
 * a whole new one, never a mix, and no lock is needed; the last set wins.
 *
 * Recency and capacity. S3 keeps no access times and cannot reorder objects
 * cheaply, so this is an approximate LRU, chosen so that a hit stays one
 * request and no listing is ever on the read path:
 * - Recency is the object's LastModified, which listings give for free. A
 *   hit renews it by copying the object onto itself with its own metadata
 *   (CopyObject, MetadataDirective REPLACE), in the background and only once
 *   the entry is older than `refreshAfter` (1 h): a hot entry costs one COPY
 *   an hour however many machines read it, as they all see the renewed time.
 *   The copy is made only while the ETag is the one read; a store that
 *   ignores that condition may pair newer bytes with the older metadata,
 *   which the checksum then finds damaged: a miss, never a wrong value.
 *   (AWS S3 renews LastModified on such a copy; s3rver keeps the old one.)
 * - Limits are kept from a listing, evicting the oldest LastModified first.
 *   `prune()` does it after HEADing every entry, as expiry and damage are in
 *   the metadata, which listings leave out. A set does it too, from the
 *   listing alone, once this process's sets since the last time reach a
 *   tenth of maxEntries (or their bytes a tenth of maxBytes): about one LIST
 *   page per hundred sets whatever the size, and the cache stays within its
 *   limits plus a tenth per writing process with no one calling prune.
 *   Expired entries no one reads wait for `prune()`.
 *
 * An entry over 5 GiB stored is refused: one PUT takes at most that. A
 * multipart upload would lift it, but a writer that dies mid-upload leaves
 * parts that are billed and invisible to listings (only
 * ListMultipartUploads, which s3rver lacks, finds them), and the recency
 * copy would need UploadPartCopy beyond 5 GiB as well.
 */

export interface S3CacheOptions extends CacheOptions, S3Location {
  /**
   * How old an entry's recency (its LastModified) may grow before a hit
   * renews it with a copy of the object onto itself. Default `'1h'`; `0`:
   * every hit; `Infinity`: never (recency is then the time of the set).
   */
  readonly refreshAfter?: CacheDuration
}

/** An object of a listing named like an entry. */
interface Listed {
  readonly name: string
  readonly size: number
  readonly modifiedAt: number
}

/** An entry opened for reading. */
interface Found {
  readonly name: string
  readonly entry: Entry
  readonly body: Readable
  readonly etag: string | undefined
  readonly modifiedAt: number | undefined
}

const OPTION_NAMES = new Set(['bucket', 'prefix', 'region', 'endpoint', 'forcePathStyle', 'client', 'ttl', 'compress', 'maxEntries', 'maxBytes', 'refreshAfter'])
const MAX_OBJECT_BYTES = 5 * 1024 ** 3
const DELETE_BATCH = 1000
/** HEADs (prune) and single deletes in flight at once. */
const CONCURRENCY = 8
/** A set keeps the limits once this process's sets since the last time reach 1/LIMITS_EVERY of them. */
const LIMITS_EVERY = 10
const ENTRY_NAME = /^[0-9a-f]{64}$/
const CONTENT_TYPE = 'application/octet-stream'

function invalid(message: string): FiledgeError {
  return new FiledgeError('CONFIG_INVALID', message, { plugin: 'cache' })
}

function checkOptions(options: S3CacheOptions): void {
  if (typeof options !== 'object' || options === null) throw invalid(`cache: expected options ({ bucket: 'my-bucket' }); got ${String(options)}`)
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw invalid(`cache.${name}: unknown option (expected one of ${[...OPTION_NAMES].join(', ')})`)
  }
  checkLocation(options, 'cache', invalid)
  for (const name of ['maxEntries', 'maxBytes'] as const) {
    const value = options[name]
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) throw invalid(`cache.${name}: expected a whole number of 1 or more; got ${JSON.stringify(value) ?? String(value)}`)
  }
  for (const check of [() => ttlMs(options.ttl), () => ttlMs(options.refreshAfter, 'refreshAfter'), () => compressionOf(undefined, options.compress)]) {
    try {
      check()
    } catch (error) {
      throw invalid(`cache.${(error as Error).message.replace(/^cache: /, '')}`)
    }
  }
}

function callsOf(sdk: Sdk, client: S3ClientLike) {
  const send = <O>(command: object) => client.send(command) as Promise<O>
  return {
    get: (input: S3.GetObjectCommandInput) => send<S3.GetObjectCommandOutput>(new sdk.GetObjectCommand(input)),
    head: (input: S3.HeadObjectCommandInput) => send<S3.HeadObjectCommandOutput>(new sdk.HeadObjectCommand(input)),
    put: (input: S3.PutObjectCommandInput) => send<unknown>(new sdk.PutObjectCommand(input)),
    copy: (input: S3.CopyObjectCommandInput) => send<unknown>(new sdk.CopyObjectCommand(input)),
    delete: (input: S3.DeleteObjectCommandInput) => send<unknown>(new sdk.DeleteObjectCommand(input)),
    deleteMany: (input: S3.DeleteObjectsCommandInput) => send<S3.DeleteObjectsCommandOutput>(new sdk.DeleteObjectsCommand(input)),
    list: (input: S3.ListObjectsV2CommandInput) => send<S3.ListObjectsV2CommandOutput>(new sdk.ListObjectsV2Command(input)),
  }
}

/** Runs `work` on every item, `limit` at a time. */
async function eachConcurrently<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < items.length) await work(items[next++])
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

const sum = (listed: readonly Listed[]) => listed.reduce((total, object) => total + object.size, 0)

/** A cache in an S3 bucket, shared by every process that opens the same bucket and prefix. */
export function createS3Cache(options: S3CacheOptions): BuiltinCache {
  checkOptions(options)
  const { bucket, maxEntries, maxBytes } = options
  const prefix = asFolder(options.prefix ?? '')
  const defaultTtl = ttlMs(options.ttl)
  const refreshAfter = ttlMs(options.refreshAfter ?? '1h')
  const location = `s3://${bucket}/${prefix}`
  // Only the host: an endpoint URL could carry user info.
  const host = options.endpoint === undefined ? undefined : new URL(options.endpoint).host
  const where = host === undefined ? location : `${location} at ${host}`
  const counters = { hits: 0, misses: 0, sets: 0, evictions: 0, expired: 0, corrupt: 0 }
  let sinceLimits = { sets: 0, bytes: 0 }
  let limiting: Promise<void> | undefined
  const refreshing = new Map<string, Promise<void>>()
  /** Errors of entries found damaged while read, which `get` turns into misses. */
  const damages = new WeakSet<Error>()
  let multiDelete = true
  let connection: Promise<ReturnType<typeof callsOf>> | undefined
  let owned: { destroy(): void } | undefined

  const s3 = () =>
    (connection ??= (async () => {
      const sdk = await loadSdk('s3 cache')
      return callsOf(sdk, options.client ?? (owned = await buildClient(sdk, options)))
    })().catch((error: unknown) => {
      connection = undefined
      throw error
    }))

  /** An SDK failure as the cache's error, naming the bucket and prefix (entries are named by their hash, keys never). */
  const failed = (error: unknown): FiledgeError => (isFiledgeError(error) ? error : cacheError(s3Error(where, host ?? 'S3', error).message, error))
  const nameOf = (key: string) => prefix + keyName(key)
  const settings = (set: SetOptions | undefined) => ({
    ttl: set?.ttl === undefined ? defaultTtl : ttlMs(set.ttl),
    compression: compressionOf(set?.compress, options.compress),
  })

  /** Deletes an object; with `etag`, not a value set since it was read (on stores that honour If-Match). */
  async function remove(name: string, etag?: string): Promise<void> {
    try {
      await (await s3()).delete({ Bucket: bucket, Key: name, IfMatch: etag })
    } catch (error) {
      if (!isMissing(error) && !isPreconditionFailed(error)) throw failed(error)
    }
  }

  async function discard(name: string, etag: string | undefined, why: 'corrupt' | 'expired'): Promise<void> {
    counters[why]++
    await remove(name, etag)
  }

  /** Deletes objects a thousand per DeleteObjects request, or one by one on a store without it. */
  async function removeAll(names: readonly string[]): Promise<void> {
    const calls = await s3()
    for (let start = 0; start < names.length; start += DELETE_BATCH) {
      const batch = names.slice(start, start + DELETE_BATCH)
      if (multiDelete) {
        try {
          const { Errors = [] } = await calls.deleteMany({ Bucket: bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } })
          const left = Errors.filter((error) => error.Code !== 'NoSuchKey')
          if (left.length > 0) throw cacheError(`${where}: ${left.length} of ${batch.length} entries could not be removed (${left[0].Code}: ${left[0].Message})`)
          continue
        } catch (error) {
          if (!isNotImplemented(error)) throw failed(error)
          multiDelete = false
        }
      }
      await eachConcurrently(batch, CONCURRENCY, (name) => remove(name))
    }
  }

  /** The objects named like entries directly under the prefix (not in folders below it). */
  async function listEntries(): Promise<Listed[]> {
    const calls = await s3()
    const listed: Listed[] = []
    let token: string | undefined
    do {
      let page: S3.ListObjectsV2CommandOutput
      try {
        page = await calls.list({ Bucket: bucket, Prefix: prefix || undefined, Delimiter: '/', ContinuationToken: token })
      } catch (error) {
        throw failed(error)
      }
      for (const { Key, Size, LastModified } of page.Contents ?? []) {
        if (Key !== undefined && ENTRY_NAME.test(Key.slice(prefix.length))) listed.push({ name: Key, size: Size ?? 0, modifiedAt: LastModified?.getTime() ?? 0 })
      }
      if (page.IsTruncated === true && page.NextContinuationToken === undefined) throw cacheError(`${where}: the store said the listing goes on but gave no continuation token`)
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (token !== undefined)
    return listed
  }

  /** Removes the least recently used entries (oldest LastModified; ties by name) until the rest fit the limits. */
  async function evict(listed: readonly Listed[]): Promise<PruneResult> {
    let [entries, bytes] = [listed.length, sum(listed)]
    const victims: Listed[] = []
    for (const object of [...listed].sort((a, b) => a.modifiedAt - b.modifiedAt || (a.name < b.name ? -1 : 1))) {
      if ((maxEntries === undefined || entries <= maxEntries) && (maxBytes === undefined || bytes <= maxBytes)) break
      victims.push(object)
      entries--
      bytes -= object.size
    }
    await removeAll(victims.map((object) => object.name))
    counters.evictions += victims.length
    return { removed: victims.length, bytes: sum(victims) }
  }

  /**
   * After a set: the limits again, from a listing, once this process's sets since the last time reach a tenth of them.
   * A failure fails the set (its value is stored) rather than leave the limits unkept without a word.
   */
  async function keepWithinLimits(): Promise<void> {
    const due = (maxEntries !== undefined && sinceLimits.sets * LIMITS_EVERY >= maxEntries) || (maxBytes !== undefined && sinceLimits.bytes * LIMITS_EVERY >= maxBytes)
    if (!due) return
    limiting ??= (async () => {
      sinceLimits = { sets: 0, bytes: 0 }
      await evict(await listEntries())
    })().finally(() => (limiting = undefined))
    await limiting
  }

  async function put(name: string, body: Buffer | Readable, entry: Entry): Promise<void> {
    try {
      // The checksum has S3 refuse bytes that arrive other than they left; it also keeps the SDK from sending a stream
      // aws-chunked with a trailing checksum, which some S3-compatible stores (s3rver) store as is, framing and all.
      const ChecksumSHA256 = Buffer.from(entry.sha256, 'hex').toString('base64')
      await (await s3()).put({ Bucket: bucket, Key: name, Body: body, ContentLength: entry.storedSize, ContentType: CONTENT_TYPE, ChecksumSHA256, Metadata: metadataOf(entry) })
    } catch (error) {
      throw failed(error)
    }
    counters.sets++
    sinceLimits.sets++
    sinceLimits.bytes += entry.storedSize
    await keepWithinLimits()
  }

  function describe(type: ValueType, compression: Compression | null, size: number, storedSize: number, sha256: string, ttl: number): Entry {
    const createdAt = Date.now()
    return { type, compression, size, storedSize, sha256, createdAt, expiresAt: ttl === Infinity ? null : createdAt + ttl }
  }

  /** The entry from a HEAD; undefined if there is no object, 'removed' if it had expired or was damaged. */
  async function inspect(name: string): Promise<Entry | 'removed' | undefined> {
    let head: S3.HeadObjectCommandOutput
    try {
      head = await (await s3()).head({ Bucket: bucket, Key: name })
    } catch (error) {
      if (isMissing(error)) return undefined
      throw failed(error)
    }
    const verdict = judge(head.Metadata, head.ContentLength)
    if (typeof verdict !== 'string') return verdict
    await discard(name, head.ETag, verdict)
    return 'removed'
  }

  /** The entry's object, its metadata and length checked before its first byte; undefined on a miss (expired or damaged: removed). */
  async function open(name: string): Promise<Found | undefined> {
    let response: S3.GetObjectCommandOutput
    try {
      response = await (await s3()).get({ Bucket: bucket, Key: name })
    } catch (error) {
      if (!isMissing(error)) throw failed(error)
      counters.misses++
      return undefined
    }
    const body = response.Body
    if (!(body instanceof Readable)) throw cacheError(`${where}: the S3 client gave the body as something other than a Node.js stream; use its Node.js HTTP handler`)
    const verdict = judge(response.Metadata, response.ContentLength)
    if (typeof verdict !== 'string') return { name, entry: verdict, body, etag: response.ETag, modifiedAt: response.LastModified?.getTime() }
    body.destroy()
    await discard(name, response.ETag, verdict)
    counters.misses++
    return undefined
  }

  /** Renews the entry's recency once older than `refreshAfter`, in the background; a failure only leaves it looking older. */
  function refresh({ name, entry, etag, modifiedAt }: Found): void {
    if (modifiedAt === undefined || !(Date.now() - modifiedAt >= refreshAfter) || refreshing.has(name)) return
    const CopySource = `${bucket}/${name.split('/').map(encodeURIComponent).join('/')}`
    const input = { Bucket: bucket, Key: name, CopySource, CopySourceIfMatch: etag, MetadataDirective: 'REPLACE' as const, Metadata: metadataOf(entry), ContentType: CONTENT_TYPE }
    const copying = s3()
      .then((calls) => calls.copy(input))
      .then(() => undefined, () => undefined)
      .finally(() => refreshing.delete(name))
    refreshing.set(name, copying)
  }

  /** The entry's value bytes, checked as they arrive; a damaged entry is removed before the stream ends with the error. */
  function valueStream(found: Found): Readable {
    const { name, entry } = found
    return checkedValue(found.body, entry, {
      failed: (what, received, cause) =>
        cacheError(`${where}: the download of entry ${name} ${what} after ${received} of ${entry.storedSize} bytes${cause === undefined ? '' : ` (${cause.message})`}`, cause),
      damaged: async (what) => {
        const error = cacheError(`${where}: entry ${name} is damaged (${what}); it was removed`)
        damages.add(error)
        await discard(name, found.etag, 'corrupt').catch(() => undefined)
        return error
      },
      passed: () => refresh(found),
    })
  }

  const cache: BuiltinCache = {
    location,

    async get<T extends CacheValue = CacheValue>(key: string): Promise<T | undefined> {
      const found = await open(nameOf(key))
      if (found === undefined) return undefined
      if (found.entry.size > constants.MAX_LENGTH) {
        found.body.destroy()
        throw refused(`${where}: the entry is ${found.entry.size} bytes, more than a Buffer holds; read it with getStream`)
      }
      // Filled in place: the size is known, so the value is not held twice (its chunks, then their concatenation).
      const bytes = Buffer.allocUnsafe(found.entry.size)
      try {
        let at = 0
        for await (const chunk of valueStream(found)) at += (chunk as Buffer).copy(bytes, at)
      } catch (error) {
        if (!damages.has(error as Error)) throw error
        counters.misses++
        return undefined
      }
      counters.hits++
      return decodeValue(found.entry.type, bytes) as T
    },

    async set(key, value, setOptions) {
      const name = nameOf(key)
      const { type, bytes } = encodeValue(value)
      const { ttl, compression } = settings(setOptions)
      if (ttl === 0) return remove(name)
      const body = compression === null ? bytes : await buffer(compressor(compression).end(bytes))
      await put(name, body, describe(type, compression, bytes.length, body.length, createHash('sha256').update(body).digest('hex'), ttl))
    },

    async has(key) {
      return typeof (await inspect(nameOf(key))) === 'object'
    },

    // A HEAD first, as DeleteObject answers the same whether or not there was an object: two requests to remove an entry, one to find none.
    async delete(key) {
      const name = nameOf(key)
      if (typeof (await inspect(name)) !== 'object') return false
      await remove(name)
      return true
    },

    // With verify, the value is downloaded whole into a private temp file while it is checked, and streamed from there (the
    // file is removed when the stream closes): damage is a miss before a byte is handed on.
    async getStream(key, getOptions) {
      const found = await open(nameOf(key))
      if (found === undefined) return undefined
      if (getOptions?.verify !== true) {
        counters.hits++
        return valueStream(found)
      }
      const spool = path.join(os.tmpdir(), `filedge-cache-${randomUUID()}.spool`)
      try {
        await pipeline(valueStream(found), createWriteStream(spool, { mode: 0o600 }))
      } catch (error) {
        await rm(spool, { force: true })
        if (!damages.has(error as Error)) throw error
        counters.misses++
        return undefined
      }
      counters.hits++
      const stream = createReadStream(spool, { highWaterMark: 1024 * 1024 })
      stream.once('close', () => void rm(spool, { force: true }))
      return stream
    },

    async getReader(key) {
      const stream = await cache.getStream(key, { verify: true })
      return stream === undefined ? undefined : streamReader(stream)
    },

    // Spooled to a private temp file while counted, compressed and hashed: the SHA-256 goes in the metadata, which S3 takes
    // before the body, and the upload needs its length. The source is not read at all for a ttl of 0.
    async setStream(key, source, setOptions) {
      const name = nameOf(key)
      const { ttl, compression } = settings(setOptions)
      if (ttl === 0) {
        await remove(name)
        return undefined
      }
      const spool = path.join(os.tmpdir(), `filedge-cache-${randomUUID()}.spool`)
      const hash = createHash('sha256')
      let [size, storedSize] = [0, 0]
      const counted = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          size += chunk.length
          done(null, chunk)
        },
      })
      const hashed = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          storedSize += chunk.length
          if (storedSize > MAX_OBJECT_BYTES) return done(refused(`${where}: the entry would take more than 5 GiB stored, the most one S3 PUT takes; it was not stored`))
          hash.update(chunk)
          done(null, chunk)
        },
      })
      const file = createWriteStream(spool, { flags: 'wx', mode: 0o600 })
      let spoolError: Error | undefined
      file.once('error', (error) => (spoolError = error))
      // Removed once closed: a source that fails at once can end the pipeline before the file is even open, and the open would create it again.
      const closed = new Promise<void>((resolve) => file.once('close', () => resolve()))
      try {
        try {
          await pipeline(source, counted, compression === null ? new PassThrough() : compressor(compression), hashed, file)
        } catch (error) {
          throw error === spoolError ? cacheError(`${where}: spooling the stream to ${spool} failed (${(error as Error).message})`, error) : error
        }
        const entry = describe('bytes', compression, size, storedSize, hash.digest('hex'), ttl)
        const body = createReadStream(spool)
        await put(name, body, entry).finally(() => body.destroy())
        return infoOf(entry)
      } finally {
        await closed
        await rm(spool, { force: true })
      }
    },

    async info(key) {
      const entry = await inspect(nameOf(key))
      return typeof entry === 'object' ? infoOf(entry) : undefined
    },

    async stats() {
      const listed = await listEntries()
      return { location, entries: listed.length, bytes: sum(listed), maxEntries: maxEntries ?? null, maxBytes: maxBytes ?? null, ...counters }
    },

    // One HEAD per entry: expiry and damage are in the metadata, which listings leave out.
    async prune() {
      const listed = await listEntries()
      const [live, gone]: Listed[][] = [[], []]
      await eachConcurrently(listed, CONCURRENCY, async (object) => {
        const found = await inspect(object.name)
        if (found !== undefined) (found === 'removed' ? gone : live).push(object)
      })
      sinceLimits = { sets: 0, bytes: 0 }
      const evicted = await evict(live)
      return { removed: gone.length + evicted.removed, bytes: sum(gone) + evicted.bytes }
    },

    async clear() {
      const listed = await listEntries()
      await removeAll(listed.map((object) => object.name))
      return { removed: listed.length, bytes: sum(listed) }
    },

    async close() {
      await Promise.all([...refreshing.values(), limiting?.catch(() => undefined)])
      owned?.destroy()
      owned = undefined
      connection = undefined
    },
  }
  return cache
}
