import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { FiledgeError } from '../../core/index.js'

/** SFTP status codes (draft-ietf-secsh-filexfer-02, the version ssh2 speaks) the source acts on. */
export const NO_SUCH_FILE = 2
export const PERMISSION_DENIED = 3

/** What ssh2 passes to a callback: a status from the server (`code` a number), or a local failure. */
export interface SftpError extends Error {
  code?: number | string
}

type Done<T> = (error: SftpError | null | undefined, value: T) => void
type DoneVoid = (error?: SftpError | null) => void

/** Attributes as ssh2 gives them: `mtime` in whole seconds, which is all SFTP v3 carries. */
export interface RemoteStats {
  readonly size: number
  readonly mtime: number
  isFile(): boolean
  isDirectory(): boolean
  isSymbolicLink(): boolean
}

export interface RemoteDirEntry {
  readonly filename: string
  readonly attrs: RemoteStats
}

/** The part of ssh2's SFTP session we use (described, not imported, so any compatible ssh2 works). */
export interface SftpSession {
  realpath(path: string, done: Done<string>): void
  stat(path: string, done: Done<RemoteStats>): void
  lstat(path: string, done: Done<RemoteStats>): void
  /** By path: ssh2 opens the directory, reads it to the end and closes it. */
  readdir(path: string, done: Done<RemoteDirEntry[]>): void
  open(path: string, flags: 'r', done: Done<Buffer>): void
  fstat(handle: Buffer, done: Done<RemoteStats>): void
  close(handle: Buffer, done: DoneVoid): void
  unlink(path: string, done: DoneVoid): void
  rename(from: string, to: string, done: DoneVoid): void
  mkdir(path: string, done: DoneVoid): void
  /** With `handle`, reads the file already open: the one whose attributes were checked. */
  createReadStream(path: string, options: { handle: Buffer; highWaterMark?: number }): Readable
  on(event: 'close' | 'end' | 'error', listener: (error?: Error) => void): unknown
}

interface ConnectConfig {
  host: string
  port: number
  username: string
  password?: string
  privateKey?: string
  passphrase?: string
  readyTimeout: number
  keepaliveInterval: number
  keepaliveCountMax: number
  hostVerifier(key: Buffer): boolean
}

/** The part of ssh2-sftp-client we use: it connects and opens the SFTP subsystem; operations go to ssh2's session. */
interface SftpClient {
  connect(config: ConnectConfig): Promise<SftpSession>
  end(): Promise<unknown>
  on(event: 'close' | 'end' | 'error', listener: (error?: Error & { level?: string; code?: string }) => void): void
}

/** Its defaults print every close and error to the console; we listen ourselves. */
type SftpClientClass = new (name: string, callbacks: { error(): void; end(): void; close(): void }) => SftpClient

/** What `ssh-keygen -l` prints for a host key: the SHA-256 of its wire blob, base64 without padding. */
export function fingerprintOf(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`
}

/** The connection went away under an operation (a server restart, a cut network): the operation's outcome is unknown. */
export class ConnectionLost extends Error {
  constructor(reason: string) {
    super(`connection lost (${reason})`)
    this.name = 'ConnectionLost'
  }
}

/** One SSH connection and its SFTP session. */
export interface Connection {
  readonly session: SftpSession
  /** Set once the connection is gone (closed, ended or failed): it is never used again. */
  readonly lost: ConnectionLost | undefined
  /** Calls `listener` when the connection is lost, at once if it is; returns what unsubscribes it. */
  onLost(listener: (lost: ConnectionLost) => void): () => void
  end(): Promise<void>
}

export interface ConnectSettings {
  /** The source as `describe()` prints it: every message starts with it. */
  readonly where: string
  readonly host: string
  readonly port: number
  readonly username: string
  readonly password?: string
  readonly privateKey?: string
  readonly passphrase?: string
  /** How long connecting may take, and how long a silent server is waited for before its connection counts as lost. */
  readonly timeoutMs: number
  /** The fingerprint the server's key must have; undefined accepts any. */
  readonly hostKey?: string
  /** Whether `hostKey` was pinned in the options, or remembered from this source's first connection. */
  readonly hostKeyPinned: boolean
}

/**
 * Connects, authenticates and opens the SFTP subsystem. Resolves with the
 * connection and the fingerprint of the key the server showed; rejects with
 * a FiledgeError that names the source and says what failed (never a
 * password or key: ssh2's messages carry none, and ours are built from the
 * options that are safe to print).
 */
export async function openConnection(settings: ConnectSettings): Promise<{ connection: Connection; fingerprint: string }> {
  const Client = await loadClient(settings.where)
  const client = new Client('filedge', { error() {}, end() {}, close() {} })

  let lost: ConnectionLost | undefined
  let failure: (Error & { level?: string; code?: string }) | undefined
  let connected = false
  const listeners = new Set<(lost: ConnectionLost) => void>()
  const markLost = (reason: string) => {
    if (lost !== undefined) return
    lost = new ConnectionLost(reason)
    for (const listener of listeners) listener(lost)
    listeners.clear()
  }
  client.on('error', (error) => {
    if (connected) markLost(error?.message ?? 'error')
    else failure ??= error
  })
  client.on('end', () => markLost('the server ended it'))
  client.on('close', () => markLost('closed'))

  let seen: string | undefined
  let session: SftpSession
  try {
    session = await client.connect({
      host: settings.host,
      port: settings.port,
      username: settings.username,
      password: settings.password,
      privateKey: settings.privateKey,
      passphrase: settings.passphrase,
      readyTimeout: settings.timeoutMs,
      // Three unanswered keepalives and the connection is lost: a server that vanished without a FIN errors reads instead of hanging them.
      keepaliveInterval: Math.max(1000, Math.round(settings.timeoutMs / 3)),
      keepaliveCountMax: 3,
      hostVerifier(key) {
        seen = fingerprintOf(key)
        return settings.hostKey === undefined || seen === settings.hostKey
      },
    })
  } catch (error) {
    throw connectError(settings, failure ?? (error as Error), seen)
  }
  connected = true
  // A protocol error on the SFTP channel alone; unheard, it would be thrown from the event emitter.
  session.on('error', (error) => markLost(error?.message ?? 'SFTP error'))
  session.on('close', () => markLost('the SFTP session closed'))
  if (seen === undefined) {
    await client.end().catch(() => undefined)
    throw new FiledgeError('INTERNAL', `${settings.where}: connected without ssh2 showing the server's host key`)
  }

  const connection: Connection = {
    session,
    get lost() {
      return lost
    },
    onLost(listener) {
      if (lost !== undefined) {
        listener(lost)
        return () => undefined
      }
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    async end() {
      markLost('closed by filedge')
      // A server that stopped answering never confirms the close: stop waiting after the timeout (keepalives end the socket).
      let timer: NodeJS.Timeout | undefined
      const gaveUp = new Promise<void>((resolve) => (timer = setTimeout(resolve, settings.timeoutMs).unref()))
      await Promise.race([client.end().catch(() => undefined), gaveUp])
      clearTimeout(timer)
    },
  }
  return { connection, fingerprint: seen }
}

/**
 * Runs one SFTP request. Rejects with ConnectionLost if the connection is
 * gone or goes while the request waits: ssh2 answers requests pending when
 * its channel ends, but a request sent after the socket closed would wait
 * for ever.
 */
export function request<T>(connection: Connection, send: (done: Done<T>) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    if (connection.lost !== undefined) return reject(connection.lost)
    const unsubscribe = connection.onLost(reject)
    send((error, value) => {
      unsubscribe()
      // ssh2 fails the requests pending on a dead channel with a bare error; the loss is what to report (and retry on).
      if (error) reject(connection.lost ?? error)
      else resolve(value)
    })
  })
}

async function loadClient(where: string): Promise<SftpClientClass> {
  try {
    const { default: Client } = await import('ssh2-sftp-client')
    return Client as unknown as SftpClientClass
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') throw error
    throw new FiledgeError('CONFIG_INVALID', `${where}: the sftp source needs the ssh2-sftp-client package: npm install ssh2-sftp-client`, { cause: error })
  }
}

/**
 * A failed connection, said the way a user acts on it. Credentials that do
 * not work and keys that do not match are the server's answer (PLUGIN_ERROR,
 * like any refusal by a remote store); a private key that cannot be parsed
 * is the config's (CONFIG_INVALID).
 */
function connectError(settings: ConnectSettings, error: Error & { level?: string; code?: string }, seen: string | undefined): FiledgeError {
  const fail = (reason: string) => new FiledgeError('PLUGIN_ERROR', `${settings.where}: ${reason}`, { plugin: 'sftp', hook: 'connect', cause: error })
  if (settings.hostKey !== undefined && seen !== undefined && seen !== settings.hostKey) {
    const how = settings.hostKeyPinned
      ? 'the key differs from hostKey'
      : 'the key differs from the one this source saw on its first connection'
    return fail(
      `host key mismatch: expected ${settings.hostKey} got ${seen} (${how}; a reinstalled server or someone in between: check with the server's administrator before pinning a new key)`,
    )
  }
  if (error.level === 'client-authentication') {
    const methods = [settings.password !== undefined && 'password', settings.privateKey !== undefined && 'privateKey'].filter(Boolean).join(' and ')
    return fail(`authentication failed for user ${JSON.stringify(settings.username)} (tried ${methods})`)
  }
  if (error.level === 'client-timeout') return fail(`no SSH handshake within ${settings.timeoutMs} ms (timeout)`)
  if (/privateKey/.test(error.message)) {
    const reason = error.message.replace(/^.*Cannot parse privateKey: /, '')
    return new FiledgeError('CONFIG_INVALID', `${settings.where}: privateKey cannot be read: ${reason}`, { cause: error })
  }
  switch (error.code) {
    case 'ECONNREFUSED':
      return fail('connection refused')
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return fail(`host ${settings.host} not found`)
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return fail(`host unreachable (${error.code})`)
    default:
      return fail(`cannot connect: ${error.message}`)
  }
}
