import { open } from 'node:fs/promises'

/**
 * The two steps of a durable promotion (write into staging, rename into
 * place) that the fetch and queue sources share: a file written and fsynced,
 * and an fsync of a path (a folder, after a rename into it).
 */

/** fsyncs `file` (a folder too: what a rename into it changed). */
export async function fsyncPath(file: string): Promise<void> {
  const handle = await open(file, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Writes `bytes` to `file` and fsyncs it before resolving. */
export async function writeDurably(file: string, bytes: Buffer | string): Promise<void> {
  const handle = await open(file, 'w')
  try {
    await handle.writeFile(bytes)
    await handle.sync()
  } finally {
    await handle.close()
  }
}
