import { createHash } from 'node:crypto'
import { close, createReadStream, open, read, statSync } from 'node:fs'
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
function verifier(file: FileRef): Transform {
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
function limiter(file: FileRef, limits: GzipLimits): Transform {
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

/**
 * The claimed file may vanish before it is read (moved away by an archiver, a
 * producer retracting it). Say so in words, and without the absolute path the
 * raw ENOENT would print.
 */
function vanished(file: FileRef, error: NodeJS.ErrnoException): Error {
  if (error.code !== 'ENOENT') return error
  return fileChanged(file.path, 'removed or renamed after it was hashed; nothing was loaded (the same bytes are loaded again if they reappear)')
}

/**
 * A claimed file's bytes from the buffer they were hashed from, when hashing
 * read the whole file in one go: no second open, read and close per small
 * file (a third of a 5,000-file run went to them). The bytes parsed are then
 * exactly the bytes hashed. A file rewritten, replaced or removed since (its
 * size, mtime or inode differ from the hashed stat) is read from disk by
 * `openSource` instead, which reports FILE_CHANGED, as it always did.
 * Gzip files always go through `openSource`.
 */
export function openHashedBytes(file: FileRef, bytes: Buffer, stat: { readonly ino: number; readonly dev: number }, options: OpenOptions = {}): Readable {
  let now
  try {
    now = statSync(file.absPath)
  } catch {
    return openSource(file, options)
  }
  if (isGzipPath(file.path) || now.size !== file.size || now.mtimeMs !== file.mtimeMs || now.ino !== stat.ino || now.dev !== stat.dev || bytes.length !== file.size) return openSource(file, options)
  return Readable.from([bytes], { objectMode: false })
}

export interface OpenOptions {
  /** Check the bytes against the claimed hash (default). `inspect` reads the start of a file it never hashed. */
  readonly verify?: boolean
  /** Runs on the opened descriptor before a byte is read; throws to refuse it (see links.ts). */
  readonly confirm?: (fd: number) => Promise<void>
  /** How far a gzip member may expand (the pipeline's limits; the defaults without). */
  readonly limits?: GzipLimits
}

/** fs functions for createReadStream whose `open` runs `confirm` on the descriptor before the stream reads from it. */
function confirmingFs(confirm: (fd: number) => Promise<void>) {
  return {
    open(path: string, flags: string, mode: number, callback: (error: Error | null, fd?: number) => void) {
      open(path, flags, mode, (error, fd) => {
        if (error !== null) return callback(error)
        confirm(fd).then(
          () => callback(null, fd),
          (refused: Error) => close(fd, () => callback(refused)),
        )
      })
    },
    read,
    close,
  }
}

/**
 * Opens a claimed file for a format: its bytes, verified against the claimed
 * hash, gunzipped when the name ends in `.gz`. The returned stream errors with
 * a FiledgeError naming the file for a truncated or corrupt gzip member.
 */
export function openSource(file: FileRef, options: OpenOptions = {}): Readable {
  // A read stream allocates a buffer of highWaterMark for every read: 1 MiB for a 5 KB file adds up over thousands of files.
  // 256 KiB at most: Node decodes a chunk of about 1 MB or more into an external string, outside V8's heap, and
  // every field sliced from it keeps all of it alive until a full GC. Loading the bench's 1 GB CSV into SQLite
  // peaked at 250 MB RSS with 1 MiB reads (~80 MB of it external strings), at 165 MB with 256 KiB, in the same 65 s.
  const raw = createReadStream(file.absPath, {
    highWaterMark: Math.max(64 * 1024, Math.min(256 * 1024, file.size + 1)),
    ...(options.confirm === undefined ? {} : { fs: confirmingFs(options.confirm) }),
  })
  let out: Readable | undefined
  // Registered before pipeline() adds its own listener, so the consumer sees this error, not the raw one.
  raw.on('error', (error: NodeJS.ErrnoException) => out?.destroy(vanished(file, error)))
  const check = options.verify === false ? new Transform({ transform: (chunk, _encoding, callback) => callback(null, chunk) }) : verifier(file)
  if (!isGzipPath(file.path)) return (out = pipeline(raw, check, () => {}))
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
  return (out = pipeline(raw, check, gunzip, limiter(file, options.limits ?? DEFAULT_LIMITS), named, () => {}))
}
