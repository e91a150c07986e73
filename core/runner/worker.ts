import { randomBytes } from 'node:crypto'
import os from 'node:os'

/** `host:pid:random`: unique per process, readable in the ledger's history. */
export function workerId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
}
