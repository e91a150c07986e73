/**
 * `filedge/plugins/cache`: a disk-backed (or S3-backed) LRU cache usable on
 * its own (`createCache`), and the plugin that makes filedge's retries and
 * remote sources cheap with it (`cache()`).
 */
export { createCache, type CreateCacheOptions } from './store.js'
export { createDiskCache } from './disk.js'
export { createS3Cache, type S3CacheOptions } from './s3.js'
export { cache, type CachePlugin, type CachePluginOptions } from './plugin.js'
export type { BuiltinCache, Cache, CacheDuration, CacheOptions, CacheStats, CacheValue, Compression, DiskCacheOptions, EntryInfo, JsonValue, PruneResult, SetOptions, ValueType } from './types.js'
export { cache as default } from './plugin.js'
