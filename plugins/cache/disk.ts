import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, stat, unlink, utimes, writeFile, type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import { pipeline as streamPipeline, Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { crc32 } from 'node:zlib'
import { LRUCache } from 'lru-cache'
import { isFiledgeError } from '../../core/index.js'
import { cacheError, compressionOf, compressor, decodeValue, decompressor, encodeValue, keyName, refused, ttlMs, VALUE_TYPES } from './codec.js'
import { lockFile, processAlive, takeOverIfStale, type Release } from './lock-file.js'
import { fileReader, streamReader } from './reader.js'
import type { BuiltinCache, Cache, CacheValue, Compression, DiskCacheOptions, EntryInfo, PruneResult, SetOptions, ValueType } from './types.js'

/**
 * A cache in a directory that many processes share.
 *
 * Why not cacache (npm's cache, v21; checked in its README and lib/entry-index.js): it has no
 * TTL and no LRU or capacity eviction (verify() only collects content no key points to); its
 * index is an append-only bucket file per key hash, where every put and every rm.entry appends
 * a line holding the key in clear (ours may carry tokens), so a hot key's bucket grows until an
 * offline verify() compacts it; and verify() deletes the whole tmp directory, breaking writers
 * in other processes. TTL, recency, per-entry compression and capacity would all have been
 * ours on top of it, so this file keeps its own small layout and takes only the idea (write
 * aside, rename in, check the bytes when read).
 *
 * Layout under `dir`:
 *   CACHEDIR.TAG                   so backup tools skip the directory
 *   v1/meta/<ab>/<hash>.json       an entry: type, compression, sizes, sha256 of the stored
 *                                  bytes, createdAt, expiresAt and the name of its value file;
 *                                  its mtime is the entry's recency
 *   v1/data/<ab>/<hash>.<random>   the stored bytes, a new name per write, so a replacing
 *                                  writer never touches a file a reader has open
 *   v1/tmp/<pid>-<random>[.json]   writes in progress; a dead pid's are leftovers
 *   v1/locks/<hash>.lock           a short per-key lock (lock-file.ts)
 * `<hash>` is keyName(key): no key reaches outside the directory, and no key is written down.
 *
 * A write streams its value into tmp (no lock held), writes its metadata into tmp, then under
 * the key's lock reads the previous metadata and renames the value and then the metadata into
 * place (the metadata's rename is the commit point); after the lock it unlinks the previous
 * value file. Readers take no lock: they see the old entry or the new one, never a mix. The
 * lock only keeps that bookkeeping exact (each value file is unlinked by the write that
 * replaced it): a holder that loses it (dead, or frozen past lock-file's STALE_MS) costs at
 * worst an orphan value file, which prune() sweeps. Pids are this host's; processes on other
 * hosts (a network file system) are told apart only by the age bounds below. No fsync: a power
 * cut may leave a renamed file whose bytes never reached the disk, which the checksum turns
 * into a miss; a cache can afford to lose an entry, not an fsync on every write.
 *
 * Reading: get checks size and sha256 before it returns; getStream checks the size before the
 * first byte and the sha256 at the end (with `verify`, every byte against the crc32 before the
 * first is handed on); has and info check the metadata and the value file's
 * size, not every byte (they do not read the value).
 *
 * Recency is the metadata file's mtime: a write sets it, get and getStream touch it (has and
 * info do not: asking is not using), so every process sees one order on disk. The in-memory
 * index (an LRUCache of hash -> value file and size) is built once, lazily, from a scan of the
 * metadata ordered by mtime; afterwards a lookup reads one metadata file (a key written by
 * another process is found there, never by a scan). Capacity is enforced after every write
 * against what this process has seen, in the order it saw: entries other processes wrote since
 * count once it reads them; prune() rescans (reordering by the shared mtimes) and is exact.
 * stats() reports the index: cheap, and exact after a prune().
 */

const TAG = 'Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by filedge.\n# For information about cache directory tags see https://bford.info/cachedir/\n'
/** A temp file untouched this long is a leftover even if its pid lives (the pid was reused). */
const LEFTOVER_MS = 3_600_000
/** A value file no metadata names may be a write about to commit; one older than this is an orphan. */
const ORPHAN_MS = 60_000
/** Reads of the metadata while its value file keeps vanishing under a reader (writers replacing it faster than it reads). */
const READ_ATTEMPTS = 10
const SCAN_CONCURRENCY = 32
/** Reads of a value go in chunks this large: a replay of 80 MB is 80 reads, not 1,300. */
const CHUNK = 1024 * 1024
const DAMAGED = Symbol('damaged metadata')
/** Errors of a setStream's source: they reach the caller as thrown, not dressed as cache errors. */
const sourceErrors = new WeakSet<object>()

interface Meta {
  readonly type: ValueType
  readonly compression: Compression | null
  readonly size: number
  readonly storedSize: number
  readonly sha256: string
  /**
   * CRC-32 of the stored bytes, what getStream's `verify` checks before a single byte is
   * handed on: as sure as SHA-256 to catch damage (a torn write, a flipped bit), at a third of
   * its cost (80 MB: 15 ms against 45). Neither stops someone who can write the directory: they
   * can write the metadata too. Entries written before it was kept are verified by sha256.
   */
  readonly crc32?: number
  readonly createdAt: number
  readonly expiresAt: number | null
  /** The value file's name under data/<ab>/. */
  readonly data: string
}

/** What a write put in its temp file. */
type Stored = Pick<Meta, 'size' | 'storedSize' | 'sha256' | 'crc32'>
/** What the index keeps of an entry. */
type Indexed = Pick<Meta, 'data' | 'storedSize'>

type Found = Meta | typeof DAMAGED | undefined
type Counter = 'hits' | 'misses' | 'sets' | 'evictions' | 'expired' | 'corrupt'

export function createDiskCache(options: DiskCacheOptions): BuiltinCache {
  if (options === null || typeof options !== 'object' || typeof options.dir !== 'string' || options.dir === '') {
    throw refused('createDiskCache needs { dir }: the directory to keep the cache in')
  }
  const root = path.resolve(options.dir)
  const maxEntries = limit(options.maxEntries, 'maxEntries')
  const maxBytes = limit(options.maxBytes, 'maxBytes')
  const defaultTtl = ttlMs(options.ttl)
  const lockTimeout = ttlMs(options.lockTimeout ?? 10_000, 'lockTimeout')
  compressionOf(undefined, options.compress)
  const orphanMs = ORPHAN_MS + Math.min(lockTimeout, LEFTOVER_MS)
  const dirs = { meta: path.join(root, 'v1', 'meta'), data: path.join(root, 'v1', 'data'), tmp: path.join(root, 'v1', 'tmp'), locks: path.join(root, 'v1', 'locks') }

  // lru-cache wants a bound, but evicting is ours (it removes files, and the entry may have been
  // replaced by another process meanwhile): its own bound is one no cache reaches.
  const index = new LRUCache<string, Indexed>({ maxSize: Number.MAX_SAFE_INTEGER, sizeCalculation: () => 1 })
  let bytes = 0
  const counters: Record<Counter, number> = { hits: 0, misses: 0, sets: 0, evictions: 0, expired: 0, corrupt: 0 }
  let opening: Promise<void> | undefined
  const closing = new AbortController()
  const pending = new Set<Promise<unknown>>()

  const metaPath = (hash: string) => path.join(dirs.meta, hash.slice(0, 2), `${hash}.json`)
  const dataPath = (hash: string, name: string) => path.join(dirs.data, hash.slice(0, 2), name)
  const lockPath = (hash: string) => path.join(dirs.locks, `${hash}.lock`)
  const tmpPath = (suffix = '') => path.join(dirs.tmp, `${process.pid}-${randomBytes(6).toString('hex')}${suffix}`)
  const closedError = () => refused(`${root} was closed; create a new cache to use it again`)

  function run<T>(work: () => Promise<T>): Promise<T> {
    if (closing.signal.aborted) return Promise.reject(closedError())
    opening ??= openDir().catch((error: unknown) => {
      opening = undefined
      throw error
    })
    const job = opening.then(work).catch((error: unknown) => {
      throw asCacheError(error)
    })
    const forget = () => pending.delete(job)
    pending.add(job)
    job.then(forget, forget)
    return job
  }

  function asCacheError(error: unknown): unknown {
    if (isFiledgeError(error) || sourceErrors.has(error as object) || typeof (error as NodeJS.ErrnoException)?.syscall !== 'string') return error
    if (isFull(error)) return cacheError(`cache ${root}: no space left on the device holding it (${(error as Error).message})`, error)
    return cacheError(`cache ${root}: ${(error as Error).message}`, error)
  }

  async function openDir(): Promise<void> {
    for (const dir of Object.values(dirs)) await mkdir(dir, { recursive: true })
    await writeFile(path.join(root, 'CACHEDIR.TAG'), TAG, { flag: 'wx' }).catch(unless('EEXIST'))
    await sweepLeftovers()
    await scan()
  }

  // The index and its byte count move together.
  function track(hash: string, entry: Indexed): void {
    untrack(hash)
    index.set(hash, entry)
    bytes += entry.storedSize
  }

  function untrack(hash: string): void {
    const known = index.peek(hash)
    if (known === undefined) return
    bytes -= known.storedSize
    index.delete(hash)
  }

  async function readMeta(hash: string): Promise<Found> {
    const text = await readFile(metaPath(hash), 'utf8').catch(unless('ENOENT'))
    return text === undefined ? undefined : (parseMeta(text, hash) ?? DAMAGED)
  }

  /**
   * The key's lock. Without `wait`, a live lock means another process is writing this key
   * right now: the caller gives up (undefined) and leaves the entry to that writer.
   */
  async function lock(hash: string, wait: true): Promise<Release>
  async function lock(hash: string, wait: boolean): Promise<Release | undefined>
  async function lock(hash: string, wait: boolean): Promise<Release | undefined> {
    const file = lockPath(hash)
    const got = await lockFile(file, { until: wait ? Date.now() + lockTimeout : null, signal: closing.signal, aside: () => tmpPath('.lock') })
    if (typeof got === 'function') return got
    if (!wait) return undefined
    if (closing.signal.aborted) throw closedError()
    throw cacheError(`cache ${root}: waited ${lockTimeout} ms for the lock file ${file}, held by ${got}; if no process is writing to this cache, delete that file`)
  }

  /**
   * Removes the key's entry if it still is `expect` (the value file's name; null: damaged
   * metadata; undefined: whatever is there). Returns what was removed.
   */
  async function remove(hash: string, expect: string | null | undefined, wait: boolean): Promise<Found> {
    untrack(hash)
    const release = await lock(hash, wait)
    if (release === undefined) return undefined
    try {
      const meta = await readMeta(hash)
      if (meta === undefined) return undefined
      if (expect !== undefined && (meta === DAMAGED ? expect !== null : meta.data !== expect)) return undefined
      await unlink(metaPath(hash)).catch(unless('ENOENT'))
      if (meta !== DAMAGED) await unlink(dataPath(hash, meta.data)).catch(unless('ENOENT'))
      return meta
    } finally {
      await release()
    }
  }

  /** Removes an entry found expired or damaged, unless another process is rewriting it right now. */
  async function discard(hash: string, expect: string | null, reason: 'expired' | 'corrupt'): Promise<Found> {
    const removed = await remove(hash, expect, false)
    if (removed !== undefined) counters[reason]++
    return removed
  }

  /**
   * The live entry of a key and `access` of its value file. A value file that is gone may have
   * been replaced a moment ago: the metadata is read again, and only if it still names the
   * missing file is the entry damaged (if it names a new one each time, it is a miss).
   */
  async function find<T>(hash: string, access: (file: string) => Promise<T>): Promise<{ meta: Meta; value: T } | undefined> {
    let missing: string | undefined
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      const meta = await readMeta(hash)
      if (meta === undefined) {
        untrack(hash)
        return undefined
      }
      if (meta === DAMAGED) {
        await discard(hash, null, 'corrupt')
        return undefined
      }
      if (expired(meta)) {
        await discard(hash, meta.data, 'expired')
        return undefined
      }
      if (meta.data === missing) break
      try {
        return { meta, value: await access(dataPath(hash, meta.data)) }
      } catch (error) {
        if (codeOf(error) !== 'ENOENT') throw error
        missing = meta.data
      }
    }
    if (missing !== undefined) await discard(hash, missing, 'corrupt')
    return undefined
  }

  /** Marks the entry most recently used, on disk (for every process) and in the index. */
  async function touch(hash: string, meta: Meta): Promise<void> {
    const at = stamp() / 1000
    await utimes(metaPath(hash), at, at).catch(unless('ENOENT'))
    track(hash, { data: meta.data, storedSize: meta.storedSize })
  }

  /** A set's ttl (ms, Infinity for never) and compression, refused before anything is written. */
  function entryOptions(setOptions: SetOptions | undefined): { ttl: number; compression: Compression | null } {
    return { ttl: setOptions?.ttl === undefined ? defaultTtl : ttlMs(setOptions.ttl), compression: compressionOf(setOptions?.compress, options.compress) }
  }

  /** A temp file of this process, made exclusively (its directory made again if it was removed by hand). */
  async function createTemp(suffix = ''): Promise<{ file: string; handle: FileHandle }> {
    const file = tmpPath(suffix)
    const handle = await open(file, 'wx').catch(async (error: unknown) => {
      if (codeOf(error) !== 'ENOENT') throw error
      await mkdir(dirs.tmp, { recursive: true })
      return open(file, 'wx')
    })
    return { file, handle }
  }

  /**
   * Writes an entry: `fill` writes the stored bytes into a temp file (no lock held, however
   * long it takes), then the metadata goes into another, and under the key's lock both are
   * renamed into place, the metadata last. The previous value file is unlinked after.
   */
  async function commit(hash: string, type: ValueType, compression: Compression | null, ttl: number, fill: (handle: FileHandle) => Promise<Stored>): Promise<EntryInfo> {
    const temps: string[] = []
    let committed = false
    try {
      const data = await createTemp()
      temps.push(data.file)
      let stored: Stored
      try {
        stored = await fill(data.handle)
      } finally {
        await data.handle.close()
      }
      const createdAt = Date.now()
      const meta: Meta = { type, compression, ...stored, createdAt, expiresAt: ttl === Infinity ? null : createdAt + ttl, data: `${hash}.${randomBytes(8).toString('hex')}` }
      const metaTemp = await createTemp('.json')
      temps.push(metaTemp.file)
      try {
        await metaTemp.handle.writeFile(JSON.stringify(meta))
        const at = stamp() / 1000
        await metaTemp.handle.utimes(at, at)
      } finally {
        await metaTemp.handle.close()
      }
      const release = await lock(hash, true)
      let previous: Found
      try {
        previous = await readMeta(hash)
        temps.push(dataPath(hash, meta.data))
        await renameInto(data.file, dataPath(hash, meta.data))
        await renameInto(metaTemp.file, metaPath(hash))
        committed = true
      } finally {
        await release()
      }
      if (previous !== undefined && previous !== DAMAGED) await unlink(dataPath(hash, previous.data)).catch(unless('ENOENT'))
      track(hash, { data: meta.data, storedSize: meta.storedSize })
      counters.sets++
      await enforceLimits()
      return describe(meta)
    } catch (error) {
      if (closing.signal.aborted) throw closedError()
      if (sourceErrors.has(error as object)) throw error
      if (isFull(error)) throw cacheError(`cache ${root}: no space left on the device holding it; the value was not stored (free some space, or lower maxBytes)`, error)
      throw asCacheError(error)
    } finally {
      if (!committed) await Promise.all(temps.map((file) => unlink(file).catch(() => undefined)))
    }
  }

  /** Streams a setStream's source into the temp file, compressing and hashing as it goes: memory stays bounded. */
  async function streamInto(handle: FileHandle, source: Readable | AsyncIterable<Uint8Array>, compression: Compression | null): Promise<Stored> {
    let size = 0
    let storedSize = 0
    let crc = 0
    const digest = createHash('sha256')
    async function* read() {
      try {
        for await (const chunk of source) {
          const bytes = asBytes(chunk)
          size += bytes.length
          yield bytes
        }
      } catch (error) {
        if (error instanceof Object) sourceErrors.add(error)
        throw error
      }
    }
    async function* measure(chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        storedSize += chunk.length
        digest.update(chunk)
        crc = crc32(chunk, crc)
        yield chunk
      }
    }
    // The stream closes the handle when it ends; commit's close of it again does nothing.
    const out = handle.createWriteStream()
    const signal = closing.signal
    // close() stops the write even while the source has nothing to give (the pipeline alone
    // would wait for its next chunk to notice).
    const stop = () => source instanceof Readable && source.destroy()
    signal.addEventListener('abort', stop)
    try {
      if (compression === null) await pipeline(read(), measure, out, { signal })
      else await pipeline(read(), compressor(compression), measure, out, { signal })
    } finally {
      signal.removeEventListener('abort', stop)
    }
    return { size, storedSize, sha256: digest.digest('hex'), crc32: crc }
  }

  /** Evicts least recently used entries until this process's view fits the limits. */
  async function enforceLimits(): Promise<{ removed: number; bytes: number }> {
    let removed = 0
    let freed = 0
    while ((maxEntries !== null && index.size > maxEntries) || (maxBytes !== null && bytes > maxBytes)) {
      const hash = index.rkeys().next().value
      if (hash === undefined) break
      const known = index.peek(hash)!
      const gone = await remove(hash, known.data, false)
      if (gone === undefined || gone === DAMAGED) continue
      counters.evictions++
      removed++
      freed += gone.storedSize
    }
    return { removed, bytes: freed }
  }

  async function listEntries(): Promise<string[]> {
    const hashes: string[] = []
    for (const shard of await listDir(dirs.meta)) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue
      for (const name of await listDir(path.join(dirs.meta, shard))) {
        const hash = /^([0-9a-f]{64})\.json$/.exec(name)?.[1]
        if (hash?.startsWith(shard)) hashes.push(hash)
      }
    }
    return hashes
  }

  /**
   * Rebuilds the index from the metadata on disk, oldest use first; removes what is expired,
   * unreadable or without its value file (checksums are checked when read, not here: that
   * would read every byte). Returns what it removed and the value files still named.
   */
  async function scan(): Promise<{ removed: number; bytes: number; named: Set<string> }> {
    const live: { hash: string; meta: Meta; at: number }[] = []
    const named = new Set<string>()
    let removed = 0
    let freed = 0
    await eachLimited(await listEntries(), async (hash) => {
      const [meta, at] = await Promise.all([readMeta(hash), stat(metaPath(hash)).then((info) => info.mtimeMs, () => 0)])
      if (meta === undefined) return
      const size = meta === DAMAGED ? -1 : await stat(dataPath(hash, meta.data)).then((info) => info.size, () => -1)
      if (meta !== DAMAGED && !expired(meta) && size === meta.storedSize) {
        live.push({ hash, meta, at })
        named.add(meta.data)
        return
      }
      const gone = await discard(hash, meta === DAMAGED ? null : meta.data, meta !== DAMAGED && expired(meta) ? 'expired' : 'corrupt')
      if (gone !== undefined) {
        removed++
        freed += Math.max(size, 0)
      } else if (meta !== DAMAGED) named.add(meta.data)
    })
    index.clear()
    bytes = 0
    for (const { hash, meta } of live.sort((a, b) => a.at - b.at)) track(hash, { data: meta.data, storedSize: meta.storedSize })
    return { removed, bytes: freed, named }
  }

  /** Temp files of dead (or long silent) writers, and their stale locks. Returns the bytes freed. */
  async function sweepLeftovers(): Promise<number> {
    const freed = await sweep(dirs.tmp, (name, age) => age > LEFTOVER_MS || !processAlive(Number(/^(\d+)-/.exec(name)?.[1])))
    await eachLimited(await listDir(dirs.locks), (name) => takeOverIfStale(path.join(dirs.locks, name), () => tmpPath('.lock')))
    return freed
  }

  /** Value files no metadata names (a writer died between its two renames), once old enough. */
  async function sweepOrphans(named: Set<string>): Promise<number> {
    let freed = 0
    for (const shard of await listDir(dirs.data)) freed += await sweep(path.join(dirs.data, shard), (name, age) => !named.has(name) && age > orphanMs)
    return freed
  }

  /** Unlinks the files of `dir` that `doomed` picks (by name and ms since last written); returns the bytes freed. */
  async function sweep(dir: string, doomed: (name: string, age: number) => boolean): Promise<number> {
    let freed = 0
    await eachLimited(await listDir(dir), async (name) => {
      const info = await stat(path.join(dir, name)).catch(() => undefined)
      if (info === undefined || !doomed(name, Date.now() - info.mtimeMs)) return
      await unlink(path.join(dir, name)).then(() => (freed += info.size), unless('ENOENT'))
    })
    return freed
  }

  /**
   * Whether an open value file holds exactly the bytes its metadata describes, by its CRC-32
   * (by its SHA-256 for entries written before the CRC was kept). Read with pread: a stream of
   * the file still starts at 0. (Keeping the bytes read to serve them was measured slower: 70 MB
   * of fresh buffers cost more in garbage collection than reading the page cache again.)
   */
  async function intact(handle: FileHandle, meta: Meta): Promise<boolean> {
    const digest = meta.crc32 === undefined ? createHash('sha256') : undefined
    let crc = 0
    const size = Math.min(CHUNK, Math.max(meta.storedSize, 1))
    // Two buffers: the next chunk is read (on libuv's pool) while this one is checked.
    const buffers = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)]
    let position = 0
    let turn = 0
    let reading = handle.read(buffers[0]!, 0, size, 0)
    for (;;) {
      const { bytesRead } = await reading
      if (bytesRead === 0) break
      const chunk = buffers[turn]!.subarray(0, bytesRead)
      position += bytesRead
      turn ^= 1
      reading = handle.read(buffers[turn]!, 0, size, position)
      if (digest === undefined) crc = crc32(chunk, crc)
      else digest.update(chunk)
    }
    return position === meta.storedSize && (digest === undefined ? crc === meta.crc32 : digest.digest('hex') === meta.sha256)
  }

  /** The value's stored bytes, checked as they pass and decompressed; damage ends the stream with an error and removes the entry. */
  function streamValue(handle: FileHandle, hash: string, meta: Meta, verified: boolean): Readable {
    const digest = createHash('sha256')
    let seen = 0
    const check = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        seen += chunk.length
        digest.update(chunk)
        done(null, chunk)
      },
      flush(done) {
        done(seen === meta.storedSize && digest.digest('hex') === meta.sha256 ? null : new Error('sha256 or size differs from the metadata'))
      },
    })
    const bytes = handle.createReadStream({ highWaterMark: CHUNK })
    // Bytes just verified whole are not hashed a second time: the open handle is the file that was checked.
    const stages = [bytes, ...(verified ? [] : [check]), ...(meta.compression === null ? [] : [decompressor(meta.compression)])]
    const out = stages.length === 1 ? bytes : (streamPipeline(stages, () => undefined) as unknown as Readable)
    async function* checked() {
      try {
        for await (const chunk of out) yield chunk as Buffer
      } catch (error) {
        await discard(hash, meta.data, 'corrupt')
        throw cacheError(`cache ${root}: a stored value is damaged (${(error as Error).message}); the entry was removed`, error)
      }
    }
    // Built now, not when first read: a stream dropped unread still closes its file.
    const readable = Readable.from(checked(), { objectMode: false })
    readable.once('close', () => out.destroy())
    return readable
  }

  /** An entry's value file, open, its size checked (and with `verify` every byte), counted as a hit; undefined on a miss. */
  async function openValue(hash: string, verify: boolean): Promise<{ handle: FileHandle; hash: string; meta: Meta } | undefined> {
    const found = await find(hash, (file) => open(file, 'r'))
    if (found === undefined) return miss()
    const { meta, value: handle } = found
    if ((await handle.stat()).size !== meta.storedSize || (verify && !(await intact(handle, meta)))) {
      await handle.close()
      await discard(hash, meta.data, 'corrupt')
      return miss()
    }
    await touch(hash, meta)
    counters.hits++
    return { handle, hash, meta }
  }

  function miss(): undefined {
    counters.misses++
    return undefined
  }

  async function live(hash: string): Promise<Meta | undefined> {
    const found = await find(hash, (file) => stat(file).then((info) => info.size))
    if (found === undefined) return undefined
    if (found.value === found.meta.storedSize) return found.meta
    await discard(hash, found.meta.data, 'corrupt')
    return undefined
  }

  return {
    location: root,

    get: <T extends CacheValue = CacheValue>(key: string) =>
      run(async () => {
        const hash = keyName(key)
        const found = await find(hash, (file) => readFile(file))
        if (found === undefined) return miss()
        const { meta, value: stored } = found
        const whole = stored.length === meta.storedSize && createHash('sha256').update(stored).digest('hex') === meta.sha256
        const bytes = !whole ? undefined : meta.compression === null ? stored : await transformAll(stored, decompressor(meta.compression)).catch(() => undefined)
        if (bytes === undefined || bytes.length !== meta.size) {
          await discard(hash, meta.data, 'corrupt')
          return miss()
        }
        await touch(hash, meta)
        counters.hits++
        return decodeValue(meta.type, bytes) as T
      }),

    set: (key, value, setOptions) =>
      run(async () => {
        const hash = keyName(key)
        const { type, bytes } = encodeValue(value)
        const { ttl, compression } = entryOptions(setOptions)
        if (ttl === 0) return void (await remove(hash, undefined, true))
        const stored = compression === null ? bytes : await transformAll(bytes, compressor(compression))
        const sha256 = createHash('sha256').update(stored).digest('hex')
        await commit(hash, type, compression, ttl, async (handle) => {
          await handle.writeFile(stored)
          return { size: bytes.length, storedSize: stored.length, sha256, crc32: crc32(stored) }
        })
      }),

    has: (key) => run(async () => (await live(keyName(key))) !== undefined),

    delete: (key) =>
      run(async () => {
        const removed = await remove(keyName(key), undefined, true)
        return removed !== undefined && removed !== DAMAGED && !expired(removed)
      }),

    getStream: (key, getOptions) =>
      run(async () => {
        const opened = await openValue(keyName(key), getOptions?.verify === true)
        return opened === undefined ? undefined : streamValue(opened.handle, opened.hash, opened.meta, getOptions?.verify === true)
      }),

    getReader: (key) =>
      run(async () => {
        const opened = await openValue(keyName(key), true)
        if (opened === undefined) return undefined
        const { handle, hash, meta } = opened
        return meta.compression === null ? fileReader(handle, meta.storedSize) : streamReader(streamValue(handle, hash, meta, true))
      }),

    setStream: (key, source, setOptions) => {
      // A Readable that fails before it is read (a file that does not exist) fails this call,
      // not the process: its error is held for the read, which rethrows it.
      const held = () => undefined
      if (source instanceof Readable) source.on('error', held)
      const job = run(async () => {
        const hash = keyName(key)
        if (source === null || typeof source !== 'object' || typeof (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] !== 'function') {
          throw refused('setStream takes a Readable or an async iterable of bytes')
        }
        const { ttl, compression } = entryOptions(setOptions)
        if (ttl === 0) {
          if (source instanceof Readable) source.destroy()
          await remove(hash, undefined, true)
          return undefined
        }
        return commit(hash, 'bytes', compression, ttl, (handle) => streamInto(handle, source, compression))
      })
      return source instanceof Readable ? job.finally(() => source.off('error', held)) : job
    },

    info: (key) =>
      run(async () => {
        const meta = await live(keyName(key))
        return meta === undefined ? undefined : describe(meta)
      }),

    stats: () => run(async () => ({ location: root, entries: index.size, bytes, maxEntries, maxBytes, ...counters })),

    prune: () =>
      run(async (): Promise<PruneResult> => {
        const leftovers = await sweepLeftovers()
        const scanned = await scan()
        const orphans = await sweepOrphans(scanned.named)
        const evicted = await enforceLimits()
        return { removed: scanned.removed + evicted.removed, bytes: leftovers + scanned.bytes + orphans + evicted.bytes }
      }),

    clear: () =>
      run(async (): Promise<PruneResult> => {
        let removed = 0
        let freed = 0
        await eachLimited(await listEntries(), async (hash) => {
          const gone = await remove(hash, undefined, true)
          if (gone === undefined) return
          removed++
          if (gone !== DAMAGED) freed += gone.storedSize
        })
        index.clear()
        bytes = 0
        freed += (await sweepLeftovers()) + (await sweepOrphans(new Set()))
        return { removed, bytes: freed }
      }),

    close: async () => {
      closing.abort()
      await Promise.allSettled([...pending])
    },
  }
}

function limit(value: number | undefined, name: string): number | null {
  if (value === undefined) return null
  if (!Number.isSafeInteger(value) || value <= 0) throw refused(`${name} must be a positive whole number; got ${String(value)}`)
  return value
}

function parseMeta(text: string, hash: string): Meta | undefined {
  let meta: { [field in keyof Meta]?: unknown }
  try {
    meta = JSON.parse(text) as typeof meta
  } catch {
    return undefined
  }
  const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0
  const valid =
    typeof meta === 'object' && meta !== null &&
    VALUE_TYPES.includes(meta.type as ValueType) && [null, 'gzip', 'brotli'].includes(meta.compression as string) &&
    count(meta.size) && count(meta.storedSize) && /^[0-9a-f]{64}$/.test(String(meta.sha256)) &&
    (meta.crc32 === undefined || (Number.isInteger(meta.crc32) && (meta.crc32 as number) >= 0 && (meta.crc32 as number) <= 0xffffffff)) &&
    Number.isFinite(meta.createdAt) && (meta.expiresAt === null || Number.isFinite(meta.expiresAt)) &&
    // The value file's name comes from disk: it must be this key's, inside data/.
    new RegExp(`^${hash}\\.[0-9a-f]+$`).test(String(meta.data))
  return valid ? (meta as Meta) : undefined
}

function describe(meta: Meta): EntryInfo {
  const { type, compression, size, storedSize, createdAt, expiresAt } = meta
  return { type, compression, size, storedSize, createdAt, expiresAt }
}

function expired(meta: Meta): boolean {
  return meta.expiresAt !== null && meta.expiresAt <= Date.now()
}

function asBytes(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8')
  throw refused(`setStream's source gave ${chunk === null ? 'null' : typeof chunk}; it must give bytes (Buffer or Uint8Array) or strings`)
}

/** A whole buffer through a (de)compressor. */
async function transformAll(bytes: Buffer, transform: Transform): Promise<Buffer> {
  transform.end(bytes)
  const chunks: Buffer[] = []
  for await (const chunk of transform) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

let lastStamp = 0
/** Epoch ms, strictly increasing in this process: entries used within one millisecond keep their order. */
function stamp(): number {
  lastStamp = Math.max(Date.now(), lastStamp + 0.01)
  return lastStamp
}

function codeOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code
}

function isFull(error: unknown): boolean {
  const code = codeOf(error)
  return code === 'ENOSPC' || code === 'EDQUOT'
}

/** A rejection handler that ignores the listed error codes and rethrows the rest. */
function unless(...codes: string[]): (error: unknown) => undefined {
  return (error) => {
    if (codes.includes(codeOf(error) ?? '')) return undefined
    throw error
  }
}

/** Renames into a shard directory, creating it the first time. */
async function renameInto(from: string, to: string): Promise<void> {
  try {
    await rename(from, to)
  } catch (error) {
    if (codeOf(error) !== 'ENOENT') throw error
    await mkdir(path.dirname(to), { recursive: true })
    await rename(from, to)
  }
}

async function listDir(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(unless('ENOENT'))) ?? []
}

async function eachLimited<T>(items: readonly T[], work: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < items.length) await work(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(SCAN_CONCURRENCY, items.length) }, worker))
}
