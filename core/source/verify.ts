import { createHash } from 'node:crypto'
import { open, stat } from 'node:fs/promises'
import type { FileRef } from '../destination.js'
import { fileChanged } from '../errors.js'

const CHUNK = 1024 * 1024

export interface ClaimedBytes {
  /**
   * Throws FILE_CHANGED unless the path still names the file that was read,
   * with the claimed size and mtime. Call it after the other reader finished.
   */
  confirmUnchanged(): Promise<void>
}

function changed(file: FileRef, detail: string) {
  return fileChanged(file.path, `the file changed after it was hashed (${detail}); it will be picked up again as a new version`)
}

/**
 * Reads a claimed file once more, hashing it and handing each chunk to
 * `onChunk` (a reused buffer: consume it synchronously); throws FILE_CHANGED
 * unless the bytes are the claimed ones.
 *
 * For a destination that lets another reader load the file by path (DuckDB's
 * `read_csv`): run this alongside that reader, then `confirmUnchanged()` once
 * it is done, before COMMIT. A rewrite in place before or during either read
 * changes the bytes this pass hashes or the mtime checked at the end; a file
 * renamed over the path changes the inode. Only a writer that rewrites in
 * place and restores the old mtime on purpose could slip past.
 */
export async function readClaimedBytes(file: FileRef, localPath: string, onChunk?: (chunk: Uint8Array) => void): Promise<ClaimedBytes> {
  const handle = await open(localPath, 'r')
  try {
    const hash = createHash('sha256')
    const buffer = Buffer.allocUnsafe(CHUNK)
    let size = 0
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, CHUNK, null)
      if (bytesRead === 0) break
      const chunk = bytesRead === CHUNK ? buffer : buffer.subarray(0, bytesRead)
      hash.update(chunk)
      onChunk?.(chunk)
      size += bytesRead
    }
    const digest = hash.digest('hex')
    if (digest !== file.hash || size !== file.size) {
      throw changed(file, `${file.size} bytes, ${file.hash.slice(0, 12)}… then ${size} bytes, ${digest.slice(0, 12)}…`)
    }
    const read = await handle.stat()
    return {
      async confirmUnchanged() {
        const now = await stat(localPath).catch(() => undefined)
        if (now === undefined) throw changed(file, 'it was removed while it loaded')
        if (now.ino !== read.ino || now.dev !== read.dev) throw changed(file, 'another file was moved to its path while it loaded')
        if (now.size !== file.size || now.mtimeMs !== read.mtimeMs) throw changed(file, 'it was written to while it loaded')
      },
    }
  } finally {
    await handle.close()
  }
}
