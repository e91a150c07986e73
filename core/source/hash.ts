import { createHash } from 'node:crypto'
import { createWriteStream, type WriteStream } from 'node:fs'
import type { Readable } from 'node:stream'
import { open, unlink } from 'node:fs/promises'

export interface HashResult {
  readonly hash: string
  /** Bytes actually read, which may differ from an earlier stat if the file is being written. */
  readonly size: number
  /** The whole file, when it fitted in one read (at most 1 MiB): the load can parse these bytes instead of reading the file again. */
  readonly bytes?: Buffer
}

const CHUNK = 1024 * 1024

/**
 * SHA-256 of a file's bytes, read in 1 MiB chunks into one reused buffer:
 * no stream machinery, no per-chunk allocation. Measured against Node's
 * crypto stream over the same file in `npm run bench`. `sizeHint` (the size
 * discovery saw) sizes the buffer for a small file: a fresh 1 MiB buffer per
 * 5 KB file was 5 GB of allocation and most of the GC time over 5,000 files.
 * `confirm` checks the opened descriptor before a byte is read, and throws to
 * refuse it (see links.ts).
 */
export async function hashFile(absPath: string, sizeHint = CHUNK, confirm?: (fd: number) => Promise<void>): Promise<HashResult> {
  const handle = await open(absPath, 'r')
  try {
    await confirm?.(handle.fd)
    const hash = createHash('sha256')
    // One byte over the hint, so a file that has grown since is still read to its end in the usual loop.
    const buffer = Buffer.allocUnsafe(Math.min(CHUNK, sizeHint + 1))
    const length = buffer.length
    let size = 0
    let reads = 0
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, length, null)
      if (bytesRead === 0) break
      hash.update(bytesRead === length ? buffer : buffer.subarray(0, bytesRead))
      size += bytesRead
      reads++
    }
    // One read took the whole file (the next found its end): keep it. The buffer is this call's own.
    const whole = reads === 1 && size < length ? buffer.subarray(0, size) : undefined
    return { hash: hash.digest('hex'), size, ...(whole === undefined ? {} : { bytes: whole }) }
  } finally {
    await handle.close()
  }
}

/** A file's bytes as hashing read them from its source. */
export interface HashedStream {
  readonly hash: string
  readonly size: number
  /** The whole file, when it is at most `keep` bytes: the load parses these instead of reading the source again. */
  readonly bytes?: Buffer
  /** Where the bytes were written while they were hashed (`spool`), when they were more than `keep`. */
  readonly spooled?: string
}

/**
 * SHA-256 of a source's byte stream. Up to `keep` bytes are kept in memory;
 * past that, with `spool`, every byte also goes to a local file as it is
 * hashed, so a remote file is downloaded once and what loads is exactly what
 * was hashed. Once this resolves, the spool file is the caller's to delete;
 * on an error it is deleted here. Consumed with 'data' events rather than an
 * async iterator: over 2,000 small files the iterator's promises and
 * end-of-stream bookkeeping were a measurable share of the run.
 */
export function hashStream(raw: Readable, options: { readonly keep: number; readonly spool?: () => string }): Promise<HashedStream> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256')
    const kept: Buffer[] = []
    let size = 0
    let spooled: string | undefined
    let out: WriteStream | undefined
    let settled = false
    const fail = (error: Error) => {
      if (settled) return
      settled = true
      raw.destroy()
      out?.destroy()
      if (spooled !== undefined) void unlink(spooled).catch(() => undefined)
      reject(error)
    }
    const write = (chunk: Buffer) => {
      if (!out!.write(chunk)) {
        raw.pause()
        out!.once('drain', () => raw.resume())
      }
    }
    raw.on('data', (chunk: Buffer) => {
      hash.update(chunk)
      size += chunk.length
      if (out !== undefined) {
        write(chunk)
      } else if (size <= options.keep) {
        kept.push(chunk)
      } else if (options.spool !== undefined) {
        spooled = options.spool()
        out = createWriteStream(spooled, { flags: 'wx' }).on('error', fail)
        for (const earlier of kept) out.write(earlier)
        kept.length = 0
        write(chunk)
      } else {
        kept.length = 0
      }
    })
    raw.once('error', fail)
    // Destroyed without an error (an abort some sources signal that way): not the whole file.
    let ended = false
    raw.once('close', () => ended || fail(new Error('the stream closed before its end')))
    raw.once('end', () => {
      ended = true
      const digest = hash.digest('hex')
      const done = (result: HashedStream) => {
        if (settled) return
        settled = true
        resolve(result)
      }
      if (out === undefined) done(size <= options.keep ? { hash: digest, size, bytes: kept.length === 1 ? kept[0] : Buffer.concat(kept, size) } : { hash: digest, size })
      else out.end(() => done({ hash: digest, size, spooled: spooled! }))
    })
  })
}
