import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { Readable, Transform, pipeline } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { DEFAULT_LIMITS, formatBytes, overLimit } from '../config/limits.js'
import type { ResolvedLimits } from '../config/types.js'
import type { FileRef } from '../destination.js'
import { fileChanged, fileInvalid } from '../errors.js'
import { isGzipPath } from '../formats/registry.js'

/** What opening a gzip file needs of the pipeline's limits. */
export type GzipLimits = Pick<ResolvedLimits, 'gzipMaxRatio' | 'gzipRatioGraceBytes'>

/** Re-hashes the bytes as they pass; errors with FILE_CHANGED at the end if they are not the claimed bytes. */
function verifier(file: DecodedFile): Transform {
  const hash = createHash('sha256')
  let size = 0
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk)
      size += chunk.length
      callback(null, chunk)
    },
    flush(callback) {
      const digest = hash.digest('hex')
      if (size !== file.size || digest !== file.hash) {
        callback(fileChanged(file.path, `the file changed after it was hashed (${file.size} bytes, ${file.hash.slice(0, 12)}… then ${size} bytes, ${digest.slice(0, 12)}…); it will be picked up again as a new version`))
      } else {
        callback()
      }
    },
  })
}

/**
 * A gzip file may expand to at most `gzipMaxRatio` times its compressed size,
 * or `gzipRatioGraceBytes`, whichever is larger. Refusing by ratio stops a
 * bomb after a few MB of work instead of after it has filled a table.
 */
function limiter(file: DecodedFile, limits: GzipLimits): Transform {
  const limit = Math.max(limits.gzipRatioGraceBytes, file.size * limits.gzipMaxRatio)
  let size = 0
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length
      if (size > limit) {
        const what = `gzip data expands to more than ${formatBytes(limit)}, over ${limits.gzipMaxRatio}× its ${formatBytes(file.size)}: refusing a likely gzip bomb`
        callback(fileInvalid(file.path, overLimit(what, 'gzipMaxRatio')))
      } else {
        callback(null, chunk)
      }
    },
  })
}

export interface OpenOptions {
  /** Check the bytes against the claimed hash (default). `inspect` reads the start of a file it never hashed. */
  readonly verify?: boolean
  /** How far a gzip member may expand (the pipeline's limits; the defaults without). */
  readonly limits?: GzipLimits
}

/** What `decode` needs of a file: its name (gzip, messages) and, to verify, its claimed hash and size. */
export type DecodedFile = Pick<FileRef, 'path' | 'hash' | 'size'>

/**
 * A claimed file's raw bytes as a format reads them: verified against the
 * claimed hash (FILE_CHANGED at the end if they are not the claimed bytes),
 * gunzipped when the name ends in `.gz`, within the gzip limits. The
 * returned stream errors with a FiledgeError naming the file for a
 * truncated or corrupt gzip member.
 */
export function decode(raw: Readable, file: DecodedFile, options: OpenOptions = {}): Readable {
  const check = options.verify === false ? new Transform({ transform: (chunk, _encoding, callback) => callback(null, chunk) }) : verifier(file)
  if (!isGzipPath(file.path)) return pipeline(raw, check, () => {})
  const gunzip = createGunzip()
  const named = new Transform({
    transform(chunk, _encoding, callback) {
      callback(null, chunk)
    },
  })
  // zlib's own errors ("unexpected end of file") do not say which file; rename them here.
  gunzip.on('error', (error: NodeJS.ErrnoException) => {
    if (!('code' in error) || !String(error.code).startsWith('Z_')) return
    named.destroy(fileInvalid(file.path, `corrupt or truncated gzip data (${error.message})`))
  })
  return pipeline(raw, check, gunzip, limiter(file, options.limits ?? DEFAULT_LIMITS), named, () => {})
}

/**
 * A file on local disk named by the user (`filedge validate`, `inspect`),
 * decoded as `decode` does. A file that vanishes says so in words, without
 * the absolute path the raw ENOENT would print.
 */
export function openLocalFile(absPath: string, file: DecodedFile, options: OpenOptions = {}): Readable {
  const raw = createReadStream(absPath, { highWaterMark: Math.max(64 * 1024, Math.min(256 * 1024, file.size + 1)) })
  let out: Readable | undefined
  // Registered before pipeline() adds its own listener, so the consumer sees this error, not the raw one.
  raw.on('error', (error: NodeJS.ErrnoException) =>
    out?.destroy(error.code === 'ENOENT' ? fileChanged(file.path, 'removed or renamed while it was read') : error),
  )
  return (out = decode(raw, file, options))
}
