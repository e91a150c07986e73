import path from 'node:path'
import { addAbortSignal, Transform, type Readable } from 'node:stream'
import {
  fileChanged,
  fileGone,
  FiledgeError,
  isEnvRef,
  isFiledgeError,
  readEnv,
  sourceMatcher,
  toMs,
  type ArchiveAction,
  type Duration,
  type ListOptions,
  type Logger,
  type MaybeEnv,
  type ReadOptions,
  type Source,
  type SourceContext,
  type SourceEntry,
} from '../../core/index.js'
import { ConnectionLost, NO_SUCH_FILE, openConnection, PERMISSION_DENIED, request, type Connection, type RemoteStats, type SftpError } from './connection.js'

const posix = path.posix

export interface SftpSourceOptions {
  host: string
  /** Default 22. */
  port?: number
  username: string
  /** Use `env('SFTP_PASSWORD')`: a literal string works but puts the secret in the config file. */
  password?: MaybeEnv
  /** The private key's text (OpenSSH or PEM), e.g. `env('SFTP_KEY')`; not a file name. */
  privateKey?: MaybeEnv
  /** For an encrypted `privateKey`. */
  passphrase?: MaybeEnv
  /** The remote directory to read: absolute, or relative to the account's home directory. */
  path: string
  /** Glob patterns relative to `path`. Default: every extension of the pipeline's format. */
  include?: string[]
  /** Glob patterns to skip, on top of the defaults (dotfiles, `*.tmp`, `*.part`, …). */
  exclude?: string[]
  /**
   * The server's host key, as `ssh-keygen -lf` or `ssh-keyscan host |
   * ssh-keygen -lf -` prints it: `SHA256:` and base64. A server showing
   * another key is refused. Without it the first key seen is trusted for the
   * life of the source (a later connection showing another is refused too)
   * and its fingerprint is logged, to be pinned here.
   */
  hostKey?: string
  /**
   * How long connecting (TCP, handshake, authentication) may take, and how
   * long a server may stay silent before its connection counts as lost (a
   * read in progress then errors instead of hanging). Default `'20s'`.
   */
  timeout?: Duration
}

const DEFAULT_PORT = 22
const DEFAULT_TIMEOUT: Duration = '20s'
/** An OpenSSH SHA-256 fingerprint: 32 bytes, base64 without its padding. */
const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/

/**
 * Files in a directory of an SFTP server, read over one SSH connection per
 * source (opened by `connect`, closed by `close`; opened again once when it
 * dropped between two calls, so a server restarted between runs or polls
 * needs no filedge restart).
 *
 * Versions are `mtime:size`. SFTP v3 gives mtimes in whole seconds, so the
 * source declares no `exactVersions`: the core hashes again a file it hashed
 * within 2 s of its last modification, and a same-size rewrite inside one
 * second is still caught.
 *
 * Symbolic links are never followed, wherever they point: the server, not
 * filedge, decides what a link on it resolves to, and a link that leads out of
 * the directory is one filedge must not read. A link the patterns match is
 * reported through `warn`. Dot-directories are not entered.
 */
export function sftp(options: SftpSourceOptions): Source {
  const settings = checkOptions(options)
  const { where, origin } = settings

  let logger: Logger | undefined
  let match: (relative: string) => boolean = () => false
  /** The directory's absolute remote path, resolved by the first `connect`. */
  let root: string | undefined
  let credentials: { password?: string; privateKey?: string; passphrase?: string } = {}
  let open = false
  let current: Connection | undefined
  let connecting: Promise<Connection> | undefined
  /** The key fingerprint every connection must show: pinned, or the first one seen. */
  let trustedKey = settings.hostKey

  function connection(): Promise<Connection> {
    if (current !== undefined && current.lost === undefined) return Promise.resolve(current)
    connecting ??= (async () => {
      try {
        const opened = await openConnection({
          where,
          host: options.host,
          port: settings.port,
          username: options.username,
          ...credentials,
          timeoutMs: settings.timeoutMs,
          hostKey: trustedKey,
          hostKeyPinned: settings.hostKey !== undefined,
        })
        if (!open) {
          // Closed while connecting: nobody would ever close this one.
          await opened.connection.end()
          throw new FiledgeError('STOPPED', `${where}: closed while connecting`)
        }
        if (trustedKey === undefined) {
          trustedKey = opened.fingerprint
          logger?.warn(`${where}: host key ${opened.fingerprint} accepted without checking; pin it with hostKey: '${opened.fingerprint}'`)
        }
        current = opened.connection
        return current
      } finally {
        connecting = undefined
      }
    })()
    return connecting
  }

  /**
   * Runs `operation` on the connection, opening it again first if it was
   * lost since the last call. An operation that loses a connection it did
   * not open itself is run once more on a new one: every operation here is
   * safe to repeat (an archive checks the version again, and finds the file
   * gone if the first attempt did move it).
   */
  async function withConnection<T>(operation: (connection: Connection) => Promise<T>): Promise<T> {
    if (!open) throw new FiledgeError('INTERNAL', `${where}: used before connect() or after close()`)
    const before = current
    const reused = before !== undefined && before.lost === undefined
    if (before?.lost !== undefined) logger?.info(`${where}: ${before.lost.message}; connecting again`)
    const first = await connection()
    try {
      return await operation(first)
    } catch (error) {
      if (!(error instanceof ConnectionLost) || !reused) throw error
      logger?.info(`${where}: ${error.message}; connecting again`)
      return operation(await connection())
    }
  }

  const entryPath = (remote: string) => `${origin}${remote}`
  const rootDir = () => root ?? '/'
  const relativeOf = (remote: string) => remote.slice(rootDir() === '/' ? 1 : rootDir().length + 1)

  /** The remote path an entry path names; only paths of this source's directory are accepted. */
  function remoteOf(entryPath: string): string {
    const remote = entryPath.startsWith(`${origin}/`) ? entryPath.slice(origin.length) : undefined
    if (remote === undefined || posix.normalize(remote) !== remote || !isInside(rootDir(), remote)) {
      throw new FiledgeError('INTERNAL', `${where}: ${entryPath} is not a file of this source`)
    }
    return remote
  }

  function entryOf(remote: string, stats: RemoteStats): SourceEntry {
    return { path: entryPath(remote), size: stats.size, version: versionOf(stats), modifiedAt: stats.mtime * 1000 }
  }

  /** Any failure of a request, as a FiledgeError naming the source and what was being done. */
  function failed(error: unknown, doing: string): FiledgeError {
    if (isFiledgeError(error)) return error
    const reason = error instanceof Error ? error.message : String(error)
    return new FiledgeError('PLUGIN_ERROR', `${where}: ${doing}: ${reason}`, { plugin: 'sftp', cause: error })
  }

  async function lstatOrUndefined(connection: Connection, remote: string): Promise<RemoteStats | undefined> {
    try {
      return await request<RemoteStats>(connection, (done) => connection.session.lstat(remote, done))
    } catch (error) {
      if (statusOf(error) === NO_SUCH_FILE) return undefined
      throw error
    }
  }

  async function* walk(dir: string, relativeDir: string, { signal, warn }: ListOptions): AsyncGenerator<SourceEntry> {
    if (signal.aborted) return
    let entries
    try {
      entries = await withConnection((c) => request<{ filename: string; attrs: RemoteStats }[]>(c, (done) => c.session.readdir(dir, done)))
    } catch (error) {
      const status = statusOf(error)
      if (relativeDir === '') throw rootError(error)
      // Removed while the walk was under way: nothing left to list there.
      if (status === NO_SUCH_FILE) return
      if (status === PERMISSION_DENIED) {
        warn(`${entryPath(dir)}: permission denied; not listed`)
        return
      }
      throw failed(error, `listing ${entryPath(dir)}`)
    }
    // By code unit, not by locale: the same order on every machine.
    entries.sort((a, b) => (a.filename < b.filename ? -1 : a.filename > b.filename ? 1 : 0))
    for (const { filename, attrs } of entries) {
      if (signal.aborted) return
      const remote = posix.join(dir, filename)
      const relative = relativeDir === '' ? filename : `${relativeDir}/${filename}`
      if (attrs.isDirectory()) {
        if (!filename.startsWith('.')) yield* walk(remote, relative, { signal, warn })
      } else if (attrs.isSymbolicLink()) {
        if (match(relative)) warn(`${entryPath(remote)}: a symbolic link; not followed (an SFTP source never follows links)`)
      } else if (attrs.isFile() && match(relative)) {
        yield entryOf(remote, attrs)
      }
    }
  }

  function rootError(error: unknown): FiledgeError {
    switch (statusOf(error)) {
      case NO_SUCH_FILE:
        return new FiledgeError('PLUGIN_ERROR', `${where}: no such directory`, { plugin: 'sftp', cause: error })
      case PERMISSION_DENIED:
        return new FiledgeError('PLUGIN_ERROR', `${where}: permission denied`, { plugin: 'sftp', cause: error })
      default:
        return failed(error, 'reading the directory')
    }
  }

  /** Creates `dir` and its missing parents, as `mkdir -p`; one created meanwhile by someone else is fine. */
  async function makeDirectories(connection: Connection, dir: string): Promise<void> {
    const found = await lstatOrUndefined(connection, dir)
    if (found?.isDirectory()) return
    if (found !== undefined) throw new FiledgeError('PLUGIN_ERROR', `${where}: ${entryPath(dir)} is not a directory`, { plugin: 'sftp' })
    await makeDirectories(connection, posix.dirname(dir))
    try {
      await request<void>(connection, (done) => connection.session.mkdir(dir, done))
    } catch (error) {
      if ((await lstatOrUndefined(connection, dir))?.isDirectory() !== true) throw error
    }
  }

  /** What a run connects with, and the healthcheck's probe. */
  async function connect(ctx: SourceContext): Promise<void> {
    logger = ctx.logger
    match = sourceMatcher({ include: options.include ?? ctx.defaultInclude, exclude: options.exclude })
    credentials = readCredentials(options, where)
    open = true
    const c = await connection().catch((error: unknown) => {
      open = false
      throw error
    })
    try {
      root ??= options.path.startsWith('/')
        ? posix.normalize(options.path).replace(/(.)\/$/, '$1')
        : posix.join(await request<string>(c, (done) => c.session.realpath('.', done)), options.path).replace(/(.)\/$/, '$1')
      const found = await request<RemoteStats>(c, (done) => c.session.stat(rootDir(), done))
      if (!found.isDirectory()) throw new FiledgeError('PLUGIN_ERROR', `${where}: not a directory`, { plugin: 'sftp' })
    } catch (error) {
      await close()
      throw rootError(error)
    }
  }

  return {
    name: 'sftp',
    // mtime:size names no single content: the core re-hashes files modified within 2 s (see above).
    capabilities: { exactVersions: false },

    describe: () => where,

    connect,
    // Connecting is the probe: the handshake, the credentials, and a stat of the directory.
    healthcheck: connect,

    list(listOptions: ListOptions) {
      return walk(rootDir(), '', listOptions)
    },

    async stat(entryPath: string) {
      const remote = remoteOf(entryPath)
      try {
        const found = await withConnection((c) => lstatOrUndefined(c, remote))
        return found?.isFile() ? entryOf(remote, found) : undefined
      } catch (error) {
        throw failed(error, `stat ${entryPath}`)
      }
    },

    async read(entry: SourceEntry, { signal }: ReadOptions): Promise<Readable> {
      signal.throwIfAborted()
      const remote = remoteOf(entry.path)
      let opened: { connection: Connection; handle: Buffer; found: RemoteStats }
      try {
        opened = await withConnection(async (c) => {
          const handle = await request<Buffer>(c, (done) => c.session.open(remote, 'r', done))
          try {
            return { connection: c, handle, found: await request<RemoteStats>(c, (done) => c.session.fstat(handle, done)) }
          } catch (error) {
            c.session.close(handle, () => undefined)
            throw error
          }
        })
      } catch (error) {
        if (statusOf(error) === NO_SUCH_FILE) throw fileGone(entry.path, 'removed since it was listed')
        throw failed(error, `opening ${entry.path}`)
      }
      const { connection: c, handle, found } = opened
      if (!found.isFile() || versionOf(found) !== entry.version) {
        c.session.close(handle, () => undefined)
        throw fileChanged(entry.path, `changed since it was listed (version ${entry.version}, now ${versionOf(found)})`)
      }
      return download(c, remote, handle, found.size, entry.path, signal)
    },

    /**
     * Checks the version, then deletes or renames: SFTP v3 has no "only if
     * unchanged", so a new version written between the two requests (a few
     * ms) is deleted or moved with it. A move at least keeps its bytes.
     */
    async archive(entry: SourceEntry, action: ArchiveAction): Promise<string> {
      const remote = remoteOf(entry.path)
      try {
        return await withConnection(async (c) => {
          const now = await lstatOrUndefined(c, remote)
          if (now === undefined) return 'already gone'
          if (!now.isFile() || versionOf(now) !== entry.version) {
            return `left in place: changed since it was loaded (version ${entry.version}, now ${versionOf(now)})`
          }
          if (action.kind === 'delete') {
            try {
              await request<void>(c, (done) => c.session.unlink(remote, done))
            } catch (error) {
              if (statusOf(error) === NO_SUCH_FILE) return 'already gone'
              throw error
            }
            return `deleted ${entry.path}`
          }
          const target = posix.join(posix.resolve(rootDir(), action.to), relativeOf(remote))
          // SFTP v3 rename does not replace a file, and bytes already archived are not ours to replace.
          if ((await lstatOrUndefined(c, target)) !== undefined) return `left in place: ${entryPath(target)} already exists`
          await makeDirectories(c, posix.dirname(target))
          try {
            await request<void>(c, (done) => c.session.rename(remote, target, done))
          } catch (error) {
            if (statusOf(error) === NO_SUCH_FILE && (await lstatOrUndefined(c, remote)) === undefined) return 'already gone'
            throw error
          }
          return `moved to ${entryPath(target)}`
        })
      } catch (error) {
        throw failed(error, `archiving ${entry.path}`)
      }
    },

    close,
  }

  async function close(): Promise<void> {
    open = false
    const closing = current
    current = undefined
    await closing?.end()
  }

  /**
   * The file's bytes from the handle whose attributes were checked. The
   * stream errors (never ends short, never hangs) when the connection is
   * lost mid-file, and errors with FILE_CHANGED when the bytes read are not
   * the size the file had at open (it was truncated or grew meanwhile).
   */
  function download(c: Connection, remote: string, handle: Buffer, size: number, file: string, signal: AbortSignal): Readable {
    const source = c.session.createReadStream(remote, { handle, highWaterMark: 64 * 1024 })
    let received = 0
    const bytes = new Transform({
      highWaterMark: 64 * 1024,
      transform(chunk: Buffer, _encoding, callback) {
        received += chunk.length
        callback(null, chunk)
      },
      flush(callback) {
        callback(received === size ? null : fileChanged(file, `changed while it was read (${size} bytes at open, ${received} read)`))
      },
    })
    const lostWhileReading = (error: unknown) => failed(c.lost ?? error, `reading ${file} (${received} of ${size} bytes read)`)
    // ssh2 answers reads pending when the connection drops, but a stream paused by its reader sends its next read into the void.
    const unsubscribe = c.onLost((lost) => bytes.destroy(lostWhileReading(lost)))
    source.on('error', (error) => bytes.destroy(lostWhileReading(error)))
    bytes.once('close', () => {
      unsubscribe()
      if (!source.destroyed) source.destroy()
    })
    source.pipe(bytes)
    return addAbortSignal(signal, bytes)
  }
}

export default sftp

function versionOf(stats: RemoteStats): string {
  return `${stats.mtime}:${stats.size}`
}

function statusOf(error: unknown): number | undefined {
  const code = (error as SftpError | undefined)?.code
  return typeof code === 'number' ? code : undefined
}

function isInside(dir: string, remote: string): boolean {
  return dir === '/' ? remote.length > 1 : remote.startsWith(`${dir}/`)
}

interface CheckedOptions {
  readonly port: number
  readonly timeoutMs: number
  /** As OpenSSH prints it: without base64 padding. */
  readonly hostKey?: string
  /** `sftp://user@host:port/path`, safe to print. */
  readonly where: string
  /** `sftp://host` (and `:port` unless 22): entry paths are this and the remote absolute path. */
  readonly origin: string
}

/** What the options say, checked when the source is built, so a config with a typo fails at load rather than mid-run. */
function checkOptions(options: SftpSourceOptions): CheckedOptions {
  const invalid = (message: string) => new FiledgeError('CONFIG_INVALID', `sftp source: ${message}`)
  for (const key of ['host', 'username', 'path'] as const) {
    if (typeof options[key] !== 'string' || options[key] === '') throw invalid(`${key} is required`)
  }
  const port = options.port ?? DEFAULT_PORT
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(`port: expected 1 to 65535, got ${JSON.stringify(port)}`)
  if (options.password === undefined && options.privateKey === undefined) {
    throw invalid("set password or privateKey (e.g. password: env('SFTP_PASSWORD'))")
  }
  const hostKey = typeof options.hostKey === 'string' ? options.hostKey.replace(/=+$/, '') : undefined
  if (options.hostKey !== undefined && (hostKey === undefined || !FINGERPRINT.test(hostKey))) {
    throw invalid(`hostKey: expected the SHA-256 fingerprint ssh-keygen -lf prints (SHA256:…), got ${JSON.stringify(options.hostKey)}`)
  }
  let timeoutMs: number
  try {
    timeoutMs = toMs(options.timeout ?? DEFAULT_TIMEOUT)
  } catch {
    throw invalid(`timeout: expected a duration like '20s', got ${JSON.stringify(options.timeout)}`)
  }
  const host = options.host.includes(':') ? `[${options.host}]` : options.host
  const shown = options.path.startsWith('/') ? options.path : `/~/${options.path}`
  return {
    port,
    timeoutMs,
    hostKey,
    where: `sftp://${options.username}@${host}:${port}${shown}`,
    origin: `sftp://${host}${port === DEFAULT_PORT ? '' : `:${port}`}`,
  }
}

function readCredentials(options: SftpSourceOptions, where: string) {
  const read = (key: 'password' | 'privateKey' | 'passphrase') => {
    const value = options[key]
    const resolved = readEnv(value)
    if (resolved === undefined && isEnvRef(value)) {
      throw new FiledgeError('CONFIG_INVALID', `${where}: environment variable ${value.name} (${key}) is not set`)
    }
    return resolved
  }
  return { password: read('password'), privateKey: read('privateKey'), passphrase: read('passphrase') }
}
