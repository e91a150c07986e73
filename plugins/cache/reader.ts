import { readSync } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import type { EntryReader } from './types.js'

/**
 * A value file read in place, from its first byte to `size`. Synchronous
 * reads: the file was just read whole to be checked, so these copy from the
 * page cache, and each asynchronous read cost the event loop ~0.1 ms on this
 * VM (a 70 MB replay is 500 of them, one a frame).
 */
export function fileReader(handle: FileHandle, size: number): EntryReader {
  let position = 0
  let closed = false
  return {
    async read(buffer, offset, length) {
      if (closed) throw new Error('the cache entry was closed')
      const count = readSync(handle.fd, buffer, offset, Math.min(length, size - position), position)
      position += count
      return count
    },
    async close() {
      if (closed) return
      closed = true
      await handle.close()
    },
  }
}

/** A stream's bytes as a reader (a compressed value, a value spooled from S3): each read copies them out of its chunks. */
export function streamReader(stream: Readable): EntryReader {
  const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  let chunk: Buffer | undefined
  let ended = false
  return {
    async read(buffer, offset, length) {
      let filled = 0
      while (filled < length && !ended) {
        if (chunk === undefined || chunk.length === 0) {
          const next = await chunks.next()
          if (next.done === true) {
            ended = true
            break
          }
          chunk = next.value
          continue
        }
        const count = chunk.copy(buffer, offset + filled, 0, Math.min(chunk.length, length - filled))
        chunk = chunk.subarray(count)
        filled += count
      }
      return filled
    },
    async close() {
      ended = true
      await chunks.return?.()
      stream.destroy()
    },
  }
}
