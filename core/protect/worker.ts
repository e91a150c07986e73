import { parentPort } from 'node:worker_threads'
import { sealBytes, pseudonymBytes, type SealJob } from './seal.js'

/**
 * The protection worker (pool.ts): seals and hashes the protected values of
 * one batch at a time, on another core than the one parsing the file and
 * writing the destination. Values arrive as UTF-8 in one buffer and leave as
 * frames (or pseudonyms) in ASCII in another; both are transferred, never
 * copied.
 */
// Keys arrive once each, by id; jobs name theirs (a key in every job was a copy of its Buffer's 8 KiB pool per batch).
const keys = new Map<string, Uint8Array>()

parentPort!.on('message', (message: { key: string; bytes: Uint8Array } | Omit<SealJob, 'key'>) => {
  if ('bytes' in message) {
    keys.set(message.key, message.bytes)
    return
  }
  const job = { ...message, key: keys.get(message.keyId)! }
  try {
    const result = job.kind === 'encrypt' ? sealBytes(job) : pseudonymBytes(job)
    parentPort!.postMessage({ id: job.id, ...result }, [result.out.buffer as ArrayBuffer, result.ends.buffer as ArrayBuffer])
  } catch (error) {
    parentPort!.postMessage({ id: job.id, error: error instanceof Error ? error.message : String(error) })
  }
})
