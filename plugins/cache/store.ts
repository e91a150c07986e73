import { refused } from './codec.js'
import { createDiskCache } from './disk.js'
import { createS3Cache, type S3CacheOptions } from './s3.js'
import type { BuiltinCache, CacheOptions, DiskCacheOptions } from './types.js'

/** A directory (`{ dir }`) or an S3-compatible bucket (`{ s3: { bucket, … } }`), with the same limits either way. */
export type CreateCacheOptions = DiskCacheOptions | (CacheOptions & { readonly s3: Omit<S3CacheOptions, keyof CacheOptions> })

/** Opens a cache: the directory is created (and scanned) on first use, the bucket is connected on first use. */
export function createCache(options: CreateCacheOptions): BuiltinCache {
  if (typeof options !== 'object' || options === null) throw refused('createCache: expected options ({ dir: ".filedge/cache" } or { s3: { bucket } })')
  if ('s3' in options) {
    if ('dir' in options) throw refused('createCache: set dir or s3, not both')
    const { s3, ...limits } = options
    return createS3Cache({ ...s3, ...limits } as S3CacheOptions)
  }
  return createDiskCache(options)
}
