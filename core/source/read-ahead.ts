import type { FileHandle } from 'node:fs/promises'

/**
 * Every byte of an open file, from its first to its end, handed to `each` in
 * chunks of at most `size` bytes: positional reads into two buffers, the next
 * read in flight (on libuv's pool) while `each` takes the last. No buffer per
 * read, so no fresh pages for a new process to pay for. A chunk is valid only
 * during its call. Resolves to the number of bytes read.
 */
export async function readAhead(handle: FileHandle, size: number, each: (chunk: Buffer) => void): Promise<number> {
  const buffers = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)]
  let turn = 0
  let position = 0
  let reading = handle.read(buffers[0]!, 0, size, 0)
  for (;;) {
    const { bytesRead } = await reading
    if (bytesRead === 0) return position
    const chunk = buffers[turn]!
    position += bytesRead
    turn ^= 1
    reading = handle.read(buffers[turn]!, 0, size, position)
    try {
      each(bytesRead === size ? chunk : chunk.subarray(0, bytesRead))
    } catch (error) {
      // The read in flight settles before the caller may close the handle.
      await reading.catch(() => undefined)
      throw error
    }
  }
}
