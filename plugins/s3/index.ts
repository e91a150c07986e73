import { Readable, Transform } from 'node:stream'
import type {
  CopyObjectCommandInput,
  CopyObjectCommandOutput,
  DeleteObjectCommandInput,
  DeleteObjectCommandOutput,
  GetObjectCommandInput,
  GetObjectCommandOutput,
  HeadObjectCommandInput,
  HeadObjectCommandOutput,
  ListObjectsV2CommandInput,
  ListObjectsV2CommandOutput,
  S3ClientConfig,
} from '@aws-sdk/client-s3'
import {
  fileChanged,
  fileGone,
  FiledgeError,
  sourceMatcher,
  type ArchiveAction,
  type ListOptions,
  type ReadOptions,
  type Source,
  type SourceContext,
  type SourceEntry,
} from '../../core/index.js'
import { isMissing, isPreconditionFailed, s3Error } from './errors.js'

/**
 * The part of an `S3Client` the source calls (described, not imported, so
 * any v3 client works). The commands it is sent come from the
 * `@aws-sdk/client-s3` filedge resolves, so keep the client on the same
 * major version.
 */
export interface S3ClientLike {
  send(command: object, options?: { abortSignal?: AbortSignal }): Promise<unknown>
}

export interface S3SourceOptions {
  /** The bucket's name (not a URL: the key prefix goes in `prefix`). */
  bucket: string
  /**
   * Where in the bucket the files are, read as a folder: `in` and `in/` both
   * mean the keys under `in/`. Default: the whole bucket.
   */
  prefix?: string
  /** Glob patterns relative to the prefix. Default: every extension of the pipeline's format. */
  include?: string[]
  /** Glob patterns relative to the prefix to skip, on top of the defaults (dotfiles, `*.tmp`, `*.part`…). */
  exclude?: string[]
  /** Default: the AWS SDK's (`AWS_REGION`, the profile), else `us-east-1`; a bucket elsewhere is followed. */
  region?: string
  /** An S3-compatible store (MinIO, R2, Ceph…): `https://minio.internal:9000`. */
  endpoint?: string
  /** Path-style addressing (`host/bucket/key`), which most S3-compatible stores need. */
  forcePathStyle?: boolean
  /** Keys per ListObjectsV2 page, 1 to 1000. Default 1000. */
  pageSize?: number
  /**
   * An `S3Client` to use instead of one built here, for its version and
   * settings (credentials, retries, agent). filedge does not destroy it.
   * Without it, the client takes its credentials from the AWS SDK's chain:
   * `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, a role.
   */
  client?: S3ClientLike
}

/** The S3 calls the source makes, typed. */
interface S3Calls {
  list(input: ListObjectsV2CommandInput, signal?: AbortSignal): Promise<ListObjectsV2CommandOutput>
  head(input: HeadObjectCommandInput): Promise<HeadObjectCommandOutput>
  get(input: GetObjectCommandInput, signal: AbortSignal): Promise<GetObjectCommandOutput>
  copy(input: CopyObjectCommandInput): Promise<CopyObjectCommandOutput>
  delete(input: DeleteObjectCommandInput): Promise<DeleteObjectCommandOutput>
}

/** What `connect` sets up: the calls, and the matcher for the include patterns of this run's context. */
interface Connection {
  readonly s3: S3Calls
  readonly matches: (relative: string) => boolean
}

export type Sdk = typeof import('@aws-sdk/client-s3')

/** Which bucket, and how to reach it: the options the S3 source and the S3 cache share, checked alike. */
export type S3Location = Pick<S3SourceOptions, 'bucket' | 'prefix' | 'region' | 'endpoint' | 'forcePathStyle' | 'client'>

const OPTION_NAMES = new Set(['bucket', 'prefix', 'include', 'exclude', 'region', 'endpoint', 'forcePathStyle', 'pageSize', 'client'])
const MAX_PAGE_SIZE = 1000

/**
 * Timeouts of a client built here. The SDK sets none for S3, so a
 * connection that goes silent (a half-open socket after a network cut)
 * would hang a read forever. The socket timeout counts inactivity, and a
 * reader that stops pulling (a destination waiting on a lock) is inactivity
 * too, hence a generous five minutes; files over 1 MiB are spooled to disk
 * as they are hashed, so their download never waits on a destination.
 */
const CONNECTION_TIMEOUT_MS = 10_000
const SOCKET_TIMEOUT_MS = 300_000

function invalid(message: string): FiledgeError {
  return new FiledgeError('CONFIG_INVALID', message, { plugin: 's3' })
}

function shown(value: unknown): string {
  return JSON.stringify(value) ?? String(value)
}

function checkStrings(name: string, value: unknown): void {
  if (value !== undefined && (!Array.isArray(value) || !value.every((pattern) => typeof pattern === 'string' && pattern !== ''))) {
    throw invalid(`s3.${name}: expected a list of glob patterns; got ${shown(value)}`)
  }
}

/**
 * The location options of `options`, named `<label>.<option>` in messages
 * (`s3.bucket`, `cache.bucket`), refused through `fail`.
 */
export function checkLocation(options: S3Location, label: string, fail: (message: string) => FiledgeError): void {
  const { bucket, prefix, region, endpoint, forcePathStyle, client } = options
  if (typeof bucket !== 'string' || bucket === '') throw fail(`${label}.bucket: expected a bucket name; got ${shown(bucket)}`)
  if (bucket.includes('/') || bucket.includes(':')) {
    throw fail(`${label}.bucket: expected a bucket name, not a URL or a path; got ${shown(bucket)} (the key prefix goes in ${label}.prefix)`)
  }
  if (prefix !== undefined && typeof prefix !== 'string') throw fail(`${label}.prefix: expected a key prefix such as "incoming/"; got ${shown(prefix)}`)
  if (region !== undefined && (typeof region !== 'string' || region === '')) throw fail(`${label}.region: expected a region such as "eu-west-1"; got ${shown(region)}`)
  if (endpoint !== undefined && (typeof endpoint !== 'string' || !URL.canParse(endpoint) || !/^https?:$/.test(new URL(endpoint).protocol))) {
    throw fail(`${label}.endpoint: expected an http(s) URL such as "https://minio.internal:9000"; got ${shown(endpoint)}`)
  }
  if (forcePathStyle !== undefined && typeof forcePathStyle !== 'boolean') throw fail(`${label}.forcePathStyle: expected true or false; got ${shown(forcePathStyle)}`)
  if (client !== undefined && typeof (client as { send?: unknown } | null)?.send !== 'function') {
    throw fail(`${label}.client: expected an S3Client (an object with a send method)`)
  }
}

/** Every option checked when the config loads, so a typo fails before any run. */
function checkOptions(options: S3SourceOptions): void {
  if (typeof options !== 'object' || options === null) throw invalid(`s3: expected options ({ bucket: 'my-bucket' }); got ${shown(options)}`)
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw invalid(`s3.${name}: unknown option (expected one of ${[...OPTION_NAMES].join(', ')})`)
  }
  checkLocation(options, 's3', invalid)
  checkStrings('include', options.include)
  checkStrings('exclude', options.exclude)
  const { pageSize } = options
  if (pageSize !== undefined && (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE)) {
    throw invalid(`s3.pageSize: expected an integer from 1 to ${MAX_PAGE_SIZE}; got ${shown(pageSize)}`)
  }
}

/** A key prefix read as a folder, so globs and moved keys are relative to it alike. */
export function asFolder(prefix: string): string {
  return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`
}

/**
 * S3 quotes ETags (`"9b2c…"`); versions are kept without the quotes, which
 * every call that returns an ETag agrees on once stripped, and quoted again
 * for the conditional headers, which take the quoted form.
 */
function unquote(etag: string | undefined): string | undefined {
  return etag?.replace(/^"|"$/g, '')
}

function quote(version: string): string {
  return `"${version}"`
}

/** The SDK, or an error saying how to install it; `user` names who needs it ('s3 source', 's3 cache'). */
export async function loadSdk(user = 's3 source'): Promise<Sdk> {
  try {
    return await import('@aws-sdk/client-s3')
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && String((error as Error).message).includes('@aws-sdk/client-s3')) {
      throw new FiledgeError('PLUGIN_ERROR', `${user}: the AWS SDK is not installed; run npm install @aws-sdk/client-s3`, { plugin: 's3', cause: error })
    }
    throw error
  }
}

/**
 * `new S3Client()` without its NodeVersionSupportWarning. On Node 20 the SDK
 * warns, through `process.emitWarning`, that its releases from 2027 need
 * Node 22: printed on every filedge run, to users who can do nothing about
 * it there. The SDK's own switch turns off that one warning, and only for
 * this synchronous constructor call (the check runs inside it): the
 * variable is put back before anything else can read the environment.
 */
function quietClient(sdk: Sdk, config: S3ClientConfig): InstanceType<Sdk['S3Client']> {
  const name = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'
  const before = process.env[name]
  process.env[name] = 'true'
  try {
    return new sdk.S3Client(config)
  } finally {
    if (before === undefined) delete process.env[name]
    else process.env[name] = before
  }
}

/**
 * A client from the options. The region is the SDK's if its chain finds
 * one, else us-east-1; with `followRegionRedirects` a bucket in another
 * region is still reached (the SDK retries where S3's 301 points).
 */
export async function buildClient(sdk: Sdk, options: Pick<S3Location, 'region' | 'endpoint' | 'forcePathStyle'>): Promise<InstanceType<Sdk['S3Client']>> {
  const config: S3ClientConfig = {
    endpoint: options.endpoint,
    forcePathStyle: options.forcePathStyle,
    followRegionRedirects: true,
    requestHandler: { connectionTimeout: CONNECTION_TIMEOUT_MS, socketTimeout: SOCKET_TIMEOUT_MS },
  }
  if (options.region !== undefined) return quietClient(sdk, { ...config, region: options.region })
  const client = quietClient(sdk, config)
  try {
    await client.config.region()
    return client
  } catch {
    client.destroy()
    return quietClient(sdk, { ...config, region: 'us-east-1' })
  }
}

function s3Calls(sdk: Sdk, client: S3ClientLike): S3Calls {
  const send = <O>(command: object, signal?: AbortSignal) => client.send(command, signal === undefined ? undefined : { abortSignal: signal }) as Promise<O>
  return {
    list: (input, signal) => send(new sdk.ListObjectsV2Command(input), signal),
    head: (input) => send(new sdk.HeadObjectCommand(input)),
    get: (input, signal) => send(new sdk.GetObjectCommand(input), signal),
    copy: (input) => send(new sdk.CopyObjectCommand(input)),
    delete: (input) => send(new sdk.DeleteObjectCommand(input)),
  }
}

/**
 * The object's body, failing unless it arrives whole. A connection dropped
 * mid-object already errors Node's response stream; the count also catches
 * a body that ends early without an error (a proxy, another HTTP handler in
 * an injected client), which would otherwise hash and load a truncated file.
 * Errors name the object; a read the run aborts ends with the signal's reason.
 */
function wholeBody(body: Readable, expected: number | undefined, file: string, signal: AbortSignal): Readable {
  let received = 0
  const short = (what: string, cause?: Error) =>
    new FiledgeError('PLUGIN_ERROR', `${file}: ${what} after ${received} of ${expected ?? 'unknown'} bytes${cause === undefined ? '' : ` (${cause.message})`}`, {
      plugin: 's3',
      file,
      cause,
    })
  const checked = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length
      done(null, chunk)
    },
    flush(done) {
      done(expected === undefined || received === expected ? null : short('the download ended early'))
    },
    destroy(error, done) {
      body.destroy()
      done(error)
    },
  })
  body.on('error', (error) => checked.destroy(signal.aborted ? (signal.reason as Error) : short('the download failed', error)))
  return body.pipe(checked)
}

/** Reads a bucket (or the keys under a prefix) as a filedge source. */
export function s3(options: S3SourceOptions): Source {
  checkOptions(options)
  const bucket = options.bucket
  const prefix = asFolder(options.prefix ?? '')
  const pageSize = options.pageSize ?? MAX_PAGE_SIZE
  const root = `s3://${bucket}/`
  // Only the host: an endpoint URL could carry user info.
  const host = options.endpoint === undefined ? undefined : new URL(options.endpoint).host
  const where = `${root}${prefix}${host === undefined ? '' : ` at ${host}`}`
  const reach = host ?? 'S3'
  let connection: Connection | undefined
  let owned: InstanceType<Sdk['S3Client']> | undefined

  const connected = (): Connection => {
    if (connection === undefined) throw new FiledgeError('INTERNAL', `${where}: used before connect()`, { plugin: 's3' })
    return connection
  }

  const keyOf = (path: string): string => {
    if (!path.startsWith(root + prefix)) throw new FiledgeError('INTERNAL', `${where}: ${path} is not a file of this source`, { plugin: 's3' })
    return path.slice(root.length)
  }

  const changed = (entry: SourceEntry, now: string | undefined) =>
    fileChanged(entry.path, `overwritten since it was listed (ETag ${entry.version} then, ${now ?? 'another'} now); the new version is picked up by the next listing`)

  /** The key `move` writes, refused when it is the object itself or one this source would list again (and move again, one level deeper, every run). */
  const movedKey = (key: string, to: string, matches: Connection['matches']): string => {
    if (to.includes('://')) throw invalid(`s3 archive move to ${shown(to)}: expected a key prefix in bucket ${bucket} such as "archive/", not a URL`)
    const target = asFolder(to) + key.slice(prefix.length)
    if (target === key) throw invalid(`s3 archive move to ${shown(to)}: that is where ${root}${key} already is`)
    if (target.startsWith(prefix) && matches(target.slice(prefix.length))) {
      throw invalid(`s3 archive move to ${shown(to)}: ${root}${target} would be listed again by ${where}; move outside ${root}${prefix} or exclude that folder`)
    }
    return target
  }

  /** What a run connects with, and the healthcheck's probe. */
  async function connect({ defaultInclude }: SourceContext): Promise<void> {
    const matches = sourceMatcher({ include: options.include ?? defaultInclude, exclude: options.exclude })
    // The client outlives a failed check, so connecting again (the next run) reuses it; `close` ends it.
    let s3 = connection?.s3
    if (s3 === undefined) {
      const sdk = await loadSdk()
      s3 = s3Calls(sdk, options.client ?? (owned = await buildClient(sdk, options)))
    }
    connection = { s3, matches }
    // One key's listing: a missing bucket, wrong credentials or an unreachable endpoint fail here, before any file is claimed.
    try {
      await s3.list({ Bucket: bucket, Prefix: prefix || undefined, MaxKeys: 1 })
    } catch (error) {
      throw s3Error(where, reach, error)
    }
  }

  return {
    name: 's3',
    capabilities: { exactVersions: true },
    describe: () => where,

    connect,
    // The one-key listing `connect` makes is the probe: a missing bucket, wrong credentials or an unreachable endpoint fail it.
    healthcheck: connect,

    async *list({ signal, warn }: ListOptions) {
      const { s3, matches } = connected()
      // The next page is asked for as soon as this one arrives, so the store prepares it while this one is handed on:
      // a no-op rerun over 10,000 objects is the listing and little else.
      const fetchPage = (token: string | undefined) => {
        const page = s3.list({ Bucket: bucket, Prefix: prefix || undefined, MaxKeys: pageSize, ContinuationToken: token }, signal)
        // Awaited below, or abandoned with the listing: never an unhandled rejection.
        page.catch(() => undefined)
        return page
      }
      let next: Promise<ListObjectsV2CommandOutput> | undefined = fetchPage(undefined)
      while (next !== undefined && !signal.aborted) {
        let page: ListObjectsV2CommandOutput
        try {
          page = await next
        } catch (error) {
          if (signal.aborted) return
          throw s3Error(where, reach, error)
        }
        if (page.IsTruncated === true && page.NextContinuationToken === undefined) {
          throw new FiledgeError('PLUGIN_ERROR', `${where}: the store said the listing goes on but gave no continuation token`, { plugin: 's3' })
        }
        next = page.IsTruncated === true ? fetchPage(page.NextContinuationToken) : undefined
        for (const object of page.Contents ?? []) {
          if (signal.aborted) return
          const key = object.Key
          // Keys ending in `/` are the empty "folder" markers consoles create.
          if (key === undefined || key.endsWith('/') || !matches(key.slice(prefix.length))) continue
          const version = unquote(object.ETag)
          if (version === undefined) {
            warn(`${root}${key}: skipped, the store listed it without an ETag`)
            continue
          }
          yield { path: root + key, size: object.Size ?? 0, version, modifiedAt: object.LastModified?.getTime() ?? 0 }
        }
      }
    },

    async stat(path: string) {
      const key = keyOf(path)
      let head: HeadObjectCommandOutput
      try {
        head = await connected().s3.head({ Bucket: bucket, Key: key })
      } catch (error) {
        if (isMissing(error)) return undefined
        throw s3Error(path, reach, error)
      }
      const version = unquote(head.ETag)
      if (version === undefined) throw new FiledgeError('PLUGIN_ERROR', `${path}: the store gave no ETag`, { plugin: 's3', file: path })
      return { path, size: head.ContentLength ?? 0, version, modifiedAt: head.LastModified?.getTime() ?? 0 }
    },

    async read(entry: SourceEntry, { signal }: ReadOptions) {
      const key = keyOf(entry.path)
      let response: GetObjectCommandOutput
      try {
        // If-Match spares downloading other bytes where the store honours it; the ETag check below covers the stores that ignore it.
        response = await connected().s3.get({ Bucket: bucket, Key: key, IfMatch: quote(entry.version) }, signal)
      } catch (error) {
        if (isMissing(error)) throw fileGone(entry.path, 'deleted since it was listed')
        if (isPreconditionFailed(error)) throw changed(entry, undefined)
        throw s3Error(entry.path, reach, error)
      }
      const body = response.Body
      if (!(body instanceof Readable)) {
        throw new FiledgeError('PLUGIN_ERROR', `${entry.path}: the S3 client gave the body as something other than a Node.js stream; use its Node.js HTTP handler`, {
          plugin: 's3',
          file: entry.path,
        })
      }
      const now = unquote(response.ETag)
      if (now !== entry.version) {
        body.destroy()
        throw changed(entry, now)
      }
      return wholeBody(body, response.ContentLength, entry.path, signal)
    },

    async archive(entry: SourceEntry, action: ArchiveAction) {
      const { s3, matches } = connected()
      const key = keyOf(entry.path)
      const target = action.kind === 'move' ? movedKey(key, action.to, matches) : undefined
      const leftInPlace = (now: string | undefined) =>
        `left in place: new bytes arrived since it was listed (ETag ${entry.version} then, ${now ?? 'another'} now)`
      // Checked first for every store; the conditional headers below close the gap between this check and the change on stores that honour them (AWS does).
      let head: HeadObjectCommandOutput
      try {
        head = await s3.head({ Bucket: bucket, Key: key })
      } catch (error) {
        if (isMissing(error)) return 'already gone'
        throw s3Error(entry.path, reach, error)
      }
      const now = unquote(head.ETag)
      if (now !== entry.version) return leftInPlace(now)
      if (target !== undefined) {
        try {
          await s3.copy({ Bucket: bucket, Key: target, CopySource: `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`, CopySourceIfMatch: quote(entry.version) })
        } catch (error) {
          if (isMissing(error)) return 'already gone'
          if (isPreconditionFailed(error)) return leftInPlace(undefined)
          throw s3Error(entry.path, reach, error)
        }
      }
      try {
        await s3.delete({ Bucket: bucket, Key: key, IfMatch: quote(entry.version) })
      } catch (error) {
        if (isPreconditionFailed(error)) return target === undefined ? leftInPlace(undefined) : `copied to ${root}${target}; the original was ${leftInPlace(undefined)}`
        // A conditional delete of a key deleted meanwhile answers 404: it is gone either way.
        if (!isMissing(error)) throw s3Error(entry.path, reach, error)
      }
      return target === undefined ? 'deleted' : `moved to ${root}${target}`
    },

    async close() {
      owned?.destroy()
      owned = undefined
      connection = undefined
    },
  }
}

export default s3
