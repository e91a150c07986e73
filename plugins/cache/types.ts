import type { Readable } from 'node:stream'

/**
 * The cache's public contract, shared by its backends (a directory, an
 * S3-compatible bucket). Keys are any strings: they are hashed to names, so
 * none can escape the store, and the key itself is never written down (a
 * key may hold a URL with a token).
 */

/** JSON-able data: what `JSON.parse(JSON.stringify(x))` gives back deep-equal. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue }

/**
 * What `get` gives back is what `set` was given, same type: a string (even
 * one that looks like JSON), a Buffer, a Uint8Array, or JSON-able objects
 * and arrays (plain objects, arrays, strings, finite numbers other than -0,
 * booleans, null). Anything else (undefined, Date, Map, a class instance, a
 * cycle, NaN) is refused when set, never silently changed.
 */
export type CacheValue = string | Buffer | Uint8Array | JsonValue

/** How an entry is stored: recorded in the entry, never guessed when read. */
export type Compression = 'gzip' | 'brotli'

/** Milliseconds, or `'500ms'`, `'30s'`, `'5m'`, `'1h'`, `'7d'`. */
export type CacheDuration = number | string

export interface SetOptions {
  /**
   * How long the entry is served, from the time it is set. Omitted: the
   * cache's `ttl`. `Infinity`: never expires. `0`: expires at once, so the
   * set stores nothing and removes the key's previous value (it says the
   * value is not worth keeping). Negative: refused.
   */
  readonly ttl?: CacheDuration
  /** Overrides the cache's `compress` for this entry: `false` stores it as is. */
  readonly compress?: Compression | boolean
}

export interface GetStreamOptions {
  readonly verify?: boolean
}

/**
 * An entry's value read into buffers the caller owns, each read taking the
 * bytes after the last: a reader that is done with what it read before it
 * reads again can reuse one buffer, where a stream hands out a new one per
 * chunk.
 */
export interface EntryReader {
  /** Reads up to `length` bytes into `buffer` at `offset`; resolves to how many it read, 0 at the end of the value. */
  read(buffer: Uint8Array, offset: number, length: number): Promise<number>
  /** Lets go of the entry's file. Harmless twice. */
  close(): Promise<void>
}

export interface CacheOptions {
  /** Entries at most (evicting the least recently used). Default: no limit. */
  readonly maxEntries?: number
  /** Stored bytes at most, values after compression (evicting the least recently used). Default: no limit. */
  readonly maxBytes?: number
  /** Default time to live of an entry (see SetOptions.ttl). Default: never expires. */
  readonly ttl?: CacheDuration
  /** Default compression of an entry: `true` is gzip. Default: none. */
  readonly compress?: Compression | boolean
}

export interface DiskCacheOptions extends CacheOptions {
  /** The directory (created if missing). Many processes may share it. */
  readonly dir: string
  /** How long a write waits for another process's lock on the same key before failing, naming the lock file. Default 10 s. */
  readonly lockTimeout?: CacheDuration
}

/** An entry's description (no key: keys are not stored). */
export interface EntryInfo {
  /** What `get` returns: 'string' | 'buffer' | 'uint8array' | 'json', or 'bytes' for an entry written by setStream (get returns a Buffer). */
  readonly type: ValueType
  readonly compression: Compression | null
  /** Bytes of the value as given (before compression). */
  readonly size: number
  /** Bytes stored (after compression). */
  readonly storedSize: number
  readonly createdAt: number
  /** Epoch ms, or null for never. */
  readonly expiresAt: number | null
}

export type ValueType = 'string' | 'buffer' | 'uint8array' | 'json' | 'bytes'

export interface CacheStats {
  /** Where the cache lives: a directory, or s3://bucket/prefix. */
  readonly location: string
  readonly entries: number
  /** Stored bytes (after compression). */
  readonly bytes: number
  readonly maxEntries: number | null
  readonly maxBytes: number | null
  /** Counters of this process since the cache was opened. */
  readonly hits: number
  readonly misses: number
  readonly sets: number
  readonly evictions: number
  readonly expired: number
  /** Entries found damaged (truncated, wrong checksum, metadata without its value) and removed. */
  readonly corrupt: number
}

export interface PruneResult {
  /** Entries removed: expired, damaged, or evicted to bring the cache within its limits. */
  readonly removed: number
  /** Stored bytes freed, including leftovers of writers that died mid-write. */
  readonly bytes: number
}

export interface Cache {
  readonly location: string
  get<T extends CacheValue = CacheValue>(key: string): Promise<T | undefined>
  set(key: string, value: CacheValue, options?: SetOptions): Promise<void>
  has(key: string): Promise<boolean>
  /** True if there was an entry to remove. */
  delete(key: string): Promise<boolean>
  /**
   * The entry's bytes as a stream, decompressed (for a non-stream value:
   * the string's UTF-8, the JSON text, the buffer's bytes), or undefined on
   * a miss. A stream whose stored bytes turn out damaged ends with an error
   * and the entry is removed; size is checked before the first byte. With
   * `verify`, every stored byte is checked before the stream is returned:
   * damage is then a miss, never a stream that fails at its end (one more
   * read of the value, for readers that cannot take back what they read).
   */
  getStream(key: string, options?: GetStreamOptions): Promise<Readable | undefined>
  /**
   * The entry's value, every stored byte checked first as getStream's
   * `verify` does (damage is a miss), read into the caller's buffers, or
   * undefined on a miss. For readers that take a value apart as it comes (the
   * cache plugin's replays): a stream's chunks are new buffers, and a new
   * process pays for their fresh pages (see batches.ts). Optional in this
   * interface, which callers may implement; filedge's own caches have it
   * (BuiltinCache).
   */
  getReader?(key: string): Promise<EntryReader | undefined>
  /**
   * Stores a stream of any length in bounded memory. The entry appears only
   * once the stream has ended without error; a stream that fails or is
   * destroyed leaves the previous value in place.
   */
  setStream(key: string, source: Readable | AsyncIterable<Uint8Array>, options?: SetOptions): Promise<EntryInfo | undefined>
  /** The entry's description without reading its value, or undefined on a miss. */
  info(key: string): Promise<EntryInfo | undefined>
  stats(): Promise<CacheStats>
  /** Removes expired and damaged entries and leftovers of dead writers, then evicts down to the limits. */
  prune(): Promise<PruneResult>
  /** Removes every entry. */
  clear(): Promise<PruneResult>
  close(): Promise<void>
}

/** A cache of filedge's own (a directory, a bucket): it always has getReader. */
export interface BuiltinCache extends Cache {
  getReader(key: string): Promise<EntryReader | undefined>
}
