import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { Readable } from 'node:stream'
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { isFiledgeError, resolveConfig, type FiledgeError, type Source, type SourceContext, type SourceEntry } from '../core/index.js'
import { defaultIncludes } from '../core/formats/registry.js'
import { s3, type S3SourceOptions } from '../plugins/s3/index.js'
import { sqlite } from '../plugins/sqlite/index.js'
import { setEnv, startS3, S3RVER_CREDENTIALS, S3RVER_KEY, S3RVER_SECRET, type S3Server } from './helpers/s3-server.js'
import { REPO_ROOT, waitFor } from './helpers/workspace.js'

/**
 * The S3 source against a real S3 API (s3rver on loopback), called directly:
 * no core loop, no mocked SDK. The source finds its credentials the way it
 * does in production, through the AWS SDK's chain (here the environment).
 */

let savedEnv: Record<string, string | undefined> = {}

let server: S3Server
const sources: Source[] = []

beforeAll(async () => {
  savedEnv = setEnv(S3RVER_CREDENTIALS)
  server = await startS3()
})

afterEach(async () => {
  await Promise.all(sources.splice(0).map((source) => source.close?.()))
})

afterAll(async () => {
  await server?.close()
  setEnv(savedEnv)
})

const context: SourceContext = {
  config: resolveConfig({ pipelines: [{ name: 'p', source: 'in', destination: sqlite({ path: 'x.db' }), table: 't', columns: { a: 'string' } }] }),
  logger: { debug() {}, info() {}, warn() {}, error() {} },
  defaultInclude: defaultIncludes(['csv']),
}

let buckets = 0
/** A new bucket per test, so tests share the server but never each other's objects. */
async function freshBucket(): Promise<string> {
  const name = `bucket-${++buckets}-${randomBytes(3).toString('hex')}`
  await server.createBucket(name)
  return name
}

/** A connected source on the test server; closed after the test. */
async function connected(options: Omit<S3SourceOptions, 'endpoint' | 'forcePathStyle'>): Promise<Source> {
  const source = s3({ endpoint: server.endpoint, forcePathStyle: true, ...options })
  sources.push(source)
  await source.connect?.(context)
  return source
}

async function listAll(source: Source, signal = new AbortController().signal): Promise<SourceEntry[]> {
  const entries: SourceEntry[] = []
  const warnings: string[] = []
  for await (const entry of source.list({ signal, warn: (message) => warnings.push(message) })) entries.push(entry)
  expect(warnings).toEqual([])
  return entries
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

async function readBytes(source: Source, entry: SourceEntry): Promise<Buffer> {
  return collect(await source.read(entry, { signal: new AbortController().signal }))
}

async function failure(promise: Promise<unknown>): Promise<FiledgeError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  if (!isFiledgeError(error)) throw new Error(`expected a FiledgeError, got ${error === undefined ? 'success' : String(error)}`)
  return error
}

function onlyEntry(entries: SourceEntry[], path: string): SourceEntry {
  const found = entries.filter((entry) => entry.path === path)
  expect(found).toHaveLength(1)
  return found[0]
}

describe('options', () => {
  it('are checked by the factory, with the option named', () => {
    const code = (options: unknown) => {
      try {
        s3(options as S3SourceOptions)
      } catch (error) {
        return isFiledgeError(error) ? `${error.code} ${error.message}` : String(error)
      }
      return 'accepted'
    }
    expect(code({})).toMatch(/^CONFIG_INVALID s3\.bucket: expected a bucket name/)
    expect(code({ bucket: 's3://data/in/' })).toMatch(/^CONFIG_INVALID s3\.bucket: expected a bucket name, not a URL/)
    expect(code({ bucket: 'data', pageSize: 0 })).toMatch(/^CONFIG_INVALID s3\.pageSize: expected an integer from 1 to 1000; got 0/)
    expect(code({ bucket: 'data', pageSize: 1001 })).toMatch(/^CONFIG_INVALID s3\.pageSize/)
    expect(code({ bucket: 'data', endpoint: 'minio:9000' })).toMatch(/^CONFIG_INVALID s3\.endpoint: expected an http\(s\) URL/)
    expect(code({ bucket: 'data', include: '*.csv' })).toMatch(/^CONFIG_INVALID s3\.include: expected a list of glob patterns/)
    expect(code({ bucket: 'data', prefx: 'in/' })).toMatch(/^CONFIG_INVALID s3\.prefx: unknown option/)
    expect(code({ bucket: 'data', client: {} })).toMatch(/^CONFIG_INVALID s3\.client/)
    expect(code({ bucket: 'data', prefix: 'in', region: 'eu-west-1', pageSize: 1000 })).toBe('accepted')
  })

  it('describes the bucket, the prefix as a folder and a custom endpoint by host only', () => {
    expect(s3({ bucket: 'data', prefix: 'in' }).describe()).toBe('s3://data/in/')
    expect(s3({ bucket: 'data' }).describe()).toBe('s3://data/')
    expect(s3({ bucket: 'data', endpoint: 'https://user:hunter22@minio.internal:9000/' }).describe()).toBe('s3://data/ at minio.internal:9000')
    expect(s3({ bucket: 'data' }).capabilities).toEqual({ exactVersions: true })
  })
})

describe('list', () => {
  it('yields the matching objects under the prefix, relative globs, excludes, no dotfiles or folder markers', async () => {
    const bucket = await freshBucket()
    const etag = await server.put(bucket, 'in/a.csv', 'id\n1\n')
    for (const key of [
      'in/sub/b.csv',
      'in/c.json', // not the pipeline's format
      'in/.hidden.csv', // dotfile
      'in/.cache/d.csv', // inside a dot-directory
      'in/skip/e.csv', // the source's exclude
      'in/f.csv.tmp', // a default exclude
      'inbox/g.csv', // shares the string prefix `in`, not the folder
      'out/h.csv',
    ]) {
      await server.put(bucket, key, 'id\n1\n')
    }
    await server.put(bucket, 'in/sub/', '') // a console's folder marker

    const source = await connected({ bucket, prefix: 'in', exclude: ['skip/**'] })
    const entries = await listAll(source)
    expect(entries.map((entry) => entry.path).sort()).toEqual([`s3://${bucket}/in/a.csv`, `s3://${bucket}/in/sub/b.csv`])
    const a = onlyEntry(entries, `s3://${bucket}/in/a.csv`)
    expect(a).toMatchObject({ size: 5, version: etag })
    expect(Math.abs(a.modifiedAt - Date.now())).toBeLessThan(5 * 60_000)

    const json = await connected({ bucket, prefix: 'in/', include: ['*.json'] })
    expect((await listAll(json)).map((entry) => entry.path)).toEqual([`s3://${bucket}/in/c.json`])

    // Every name: still no folder marker (`in/sub/`), dotfile or default exclude.
    const everything = await connected({ bucket, prefix: 'in/', include: ['**'] })
    expect((await listAll(everything)).map((entry) => entry.path).sort()).toEqual(
      ['in/a.csv', 'in/c.json', 'in/skip/e.csv', 'in/sub/b.csv'].map((key) => `s3://${bucket}/${key}`),
    )

    const whole = await connected({ bucket, include: ['**/*.csv'] })
    expect((await listAll(whole)).map((entry) => entry.path).sort()).toEqual(
      ['in/a.csv', 'in/skip/e.csv', 'in/sub/b.csv', 'inbox/g.csv', 'out/h.csv'].map((key) => `s3://${bucket}/${key}`),
    )
  })

  it('pages through the bucket, each object once, one page ahead at most', async () => {
    const bucket = await freshBucket()
    const keys = Array.from({ length: 7 }, (_, index) => `in/file-${index}.csv`)
    for (const key of keys) await server.put(bucket, key, `id\n${key}\n`)
    // The real client, with its list calls counted (an injected client also exercises the `client` option).
    let listCalls = 0
    const counting = {
      send(command: object, options?: { abortSignal?: AbortSignal }) {
        if (command.constructor.name === 'ListObjectsV2Command') listCalls++
        return server.client.send(command as GetObjectCommand, options)
      },
    }
    const source = await connected({ bucket, prefix: 'in/', pageSize: 2, client: counting })
    expect(listCalls).toBe(1) // connect's check

    const iterator = source.list({ signal: new AbortController().signal, warn: () => undefined })[Symbol.asyncIterator]()
    const first = await iterator.next()
    expect(first.value?.path).toBe(`s3://${bucket}/${keys[0]}`)
    // The first page, and the next one asked for while the first is handed on; not the whole bucket.
    expect(listCalls).toBe(3)
    const paths = [first.value.path]
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) paths.push(next.value.path)

    expect(paths).toEqual(keys.map((key) => `s3://${bucket}/${key}`))
    expect(listCalls).toBe(1 + 4) // 2 + 2 + 2 + 1
  })

  it('uses an injected S3Client as it is, with its own credentials', async () => {
    const bucket = await freshBucket()
    await server.put(bucket, 'a.csv', 'id\n1\n')
    // Credentials the chain cannot find: only the injected client's own can work.
    setEnv({ AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined })
    try {
      const source = await connected({ bucket, client: server.client })
      expect((await listAll(source)).map((entry) => entry.path)).toEqual([`s3://${bucket}/a.csv`])
    } finally {
      setEnv({ AWS_ACCESS_KEY_ID: S3RVER_KEY, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET })
    }
  })

  it('ends early, without an error, when the run stops', async () => {
    const bucket = await freshBucket()
    for (let index = 0; index < 6; index++) await server.put(bucket, `f${index}.csv`, 'x')
    const source = await connected({ bucket, pageSize: 2 })
    const stop = new AbortController()
    const seen: string[] = []
    for await (const entry of source.list({ signal: stop.signal, warn: () => undefined })) {
      seen.push(entry.path)
      stop.abort()
    }
    expect(seen).toEqual([`s3://${bucket}/f0.csv`])
  })
})

describe('read and stat', () => {
  it('reads the exact bytes of the listed version', async () => {
    const bucket = await freshBucket()
    const bytes = randomBytes(300_000)
    await server.put(bucket, 'data/blob.csv', bytes)
    const source = await connected({ bucket, prefix: 'data' })
    const [entry] = await listAll(source)
    expect(entry.size).toBe(bytes.length)
    expect((await readBytes(source, entry)).equals(bytes)).toBe(true)
  })

  it('gives an overwritten object a new version; reading the stale entry is FILE_CHANGED', async () => {
    const bucket = await freshBucket()
    await server.put(bucket, 'a.csv', 'id\n1\n')
    const source = await connected({ bucket })
    const [before] = await listAll(source)

    const etag = await server.put(bucket, 'a.csv', 'id\n2\n')
    const [after] = await listAll(source)
    expect(after.path).toBe(before.path)
    expect(after.version).toBe(etag)
    expect(after.version).not.toBe(before.version)
    expect((await readBytes(source, after)).toString()).toBe('id\n2\n')

    const error = await failure(source.read(before, { signal: new AbortController().signal }))
    expect(error.code).toBe('FILE_CHANGED')
    expect(error.file).toBe(before.path)
    expect(error.message).toContain(`ETag ${before.version} then, ${after.version} now`)
  })

  it('reading an object deleted since the listing is FILE_GONE', async () => {
    const bucket = await freshBucket()
    await server.put(bucket, 'a.csv', 'id\n1\n')
    const source = await connected({ bucket })
    const [entry] = await listAll(source)
    await server.remove(bucket, 'a.csv')
    const error = await failure(source.read(entry, { signal: new AbortController().signal }))
    expect(error.code).toBe('FILE_GONE')
    expect(error.message).toBe(`s3://${bucket}/a.csv: deleted since it was listed`)
  })

  it('stat gives the entry as the store has it now, undefined once deleted', async () => {
    const bucket = await freshBucket()
    await server.put(bucket, 'in/a.csv', 'id\n1\n')
    const source = await connected({ bucket, prefix: 'in/' })
    const [listed] = await listAll(source)
    const stat = source.stat!
    expect(await stat(listed.path)).toMatchObject({ path: listed.path, size: listed.size, version: listed.version })

    const etag = await server.put(bucket, 'in/a.csv', 'id\n1\n2\n')
    expect(await stat(listed.path)).toMatchObject({ size: 7, version: etag })

    await server.remove(bucket, 'in/a.csv')
    expect(await stat(listed.path)).toBeUndefined()
  })

  it('a body that ends short without an error (another HTTP handler, a proxy) errors the stream', async () => {
    const bucket = await freshBucket()
    const bytes = randomBytes(100_000)
    await server.put(bucket, 'a.csv', bytes)
    // The real client, with the body of every GetObject cut to its first half and ended cleanly.
    const cutting = {
      async send(command: object, options?: { abortSignal?: AbortSignal }) {
        const response = await server.client.send(command as GetObjectCommand, options)
        if (!(command instanceof GetObjectCommand)) return response
        const whole = Buffer.from(await response.Body!.transformToByteArray())
        return { ...response, Body: Readable.from([whole.subarray(0, whole.length / 2)]) }
      },
    }
    const source = await connected({ bucket, client: cutting })
    const [entry] = await listAll(source)
    const error = await failure(readBytes(source, entry))
    expect(error.message).toBe(`s3://${bucket}/a.csv: the download ended early after 50000 of 100000 bytes`)
  })

  it('a connection dropped in the middle of an object errors the stream, naming the file', async () => {
    const bucket = await freshBucket()
    const size = 20 * 1024 * 1024
    await server.put(bucket, 'big.csv', randomBytes(size))
    const source = await connected({ bucket })
    const [entry] = await listAll(source)
    const stream = await source.read(entry, { signal: new AbortController().signal })

    // Some bytes in, then the server goes away; the rest never arrives.
    let received = 0
    stream.on('data', (chunk: Buffer) => {
      received += chunk.length
    })
    const outcome = new Promise<Error | undefined>((resolve) => {
      stream.once('error', resolve)
      stream.once('end', () => resolve(undefined))
    })
    await waitFor(() => received > 0, 20_000, 'the first bytes of the object')
    await server.stop()
    try {
      const error = await outcome
      expect(error, `the stream ended after ${received} of ${size} bytes without an error`).toBeDefined()
      expect(isFiledgeError(error)).toBe(true)
      expect(error!.message).toMatch(new RegExp(`^s3://${bucket}/big\\.csv: the download (failed|ended early) after \\d+ of ${size} bytes`))
      expect(received).toBeLessThan(size)
    } finally {
      await server.restart()
    }
    // The same source reads it whole once the server is back.
    expect((await readBytes(source, entry)).length).toBe(size)
  })

  it('a read the run stops ends with the abort, not a download failure', async () => {
    const bucket = await freshBucket()
    await server.put(bucket, 'big.csv', randomBytes(8 * 1024 * 1024))
    const source = await connected({ bucket })
    const [entry] = await listAll(source)
    const stop = new AbortController()
    const stream = await source.read(entry, { signal: stop.signal })
    let received = 0
    stream.on('data', (chunk: Buffer) => {
      received += chunk.length
      // Held after the first bytes: on loopback the rest of the object would otherwise arrive before the abort does.
      stream.pause()
    })
    const outcome = new Promise<Error | undefined>((resolve) => {
      stream.once('error', resolve)
      stream.once('end', () => resolve(undefined))
    })
    await waitFor(() => received > 0, 20_000, 'the first bytes of the object')
    stop.abort()
    const error = await outcome
    expect(error).toBeDefined()
    expect(isFiledgeError(error)).toBe(false)
    expect(error!.name).toBe('AbortError')
  })
})

describe('archive', () => {
  it('deletes the listed version, then reports it already gone', async () => {
    const bucket = await freshBucket()
    await server.put(bucket, 'in/a.csv', 'id\n1\n')
    const source = await connected({ bucket, prefix: 'in/' })
    const [entry] = await listAll(source)
    expect(await source.archive!(entry, { kind: 'delete' })).toBe('deleted')
    expect(await source.stat!(entry.path)).toBeUndefined()
    expect(await source.archive!(entry, { kind: 'delete' })).toBe('already gone')
  })

  it('leaves an object overwritten since the listing in place', async () => {
    const bucket = await freshBucket()
    await server.put(bucket, 'in/a.csv', 'id\n1\n')
    const source = await connected({ bucket, prefix: 'in/' })
    const [entry] = await listAll(source)
    const etag = await server.put(bucket, 'in/a.csv', 'id\n2\n')
    for (const action of [{ kind: 'delete' as const }, { kind: 'move' as const, to: 'archive/' }]) {
      const outcome = await source.archive!(entry, action)
      expect(outcome).toBe(`left in place: new bytes arrived since it was listed (ETag ${entry.version} then, ${etag} now)`)
    }
    expect(await source.stat!(entry.path)).toMatchObject({ version: etag })
    expect(await listAll(await connected({ bucket, prefix: 'archive/' }))).toEqual([])
  })

  it('moves to a key prefix, keeping the key relative to the source prefix; a second move is already gone', async () => {
    const bucket = await freshBucket()
    const bytes = randomBytes(10_000)
    await server.put(bucket, 'in/sub/a b.csv', bytes)
    const source = await connected({ bucket, prefix: 'in/' })
    const [entry] = await listAll(source)

    expect(await source.archive!(entry, { kind: 'move', to: 'done' })).toBe(`moved to s3://${bucket}/done/sub/a b.csv`)
    expect(await source.stat!(entry.path)).toBeUndefined()
    const moved = await server.client.send(new GetObjectCommand({ Bucket: bucket, Key: 'done/sub/a b.csv' }))
    expect(Buffer.from(await moved.Body!.transformToByteArray()).equals(bytes)).toBe(true)

    expect(await source.archive!(entry, { kind: 'move', to: 'done' })).toBe('already gone')
  })

  it('refuses a move the source would list again, or one given as a URL, before touching the object', async () => {
    const bucket = await freshBucket()
    await server.put(bucket, 'in/a.csv', 'id\n1\n')
    const source = await connected({ bucket, prefix: 'in/' })
    const [entry] = await listAll(source)
    const again = await failure(source.archive!(entry, { kind: 'move', to: 'in/archive/' }))
    expect(again.code).toBe('CONFIG_INVALID')
    expect(again.message).toContain(`s3://${bucket}/in/archive/a.csv would be listed again`)
    expect((await failure(source.archive!(entry, { kind: 'move', to: `s3://${bucket}/archive/` }))).code).toBe('CONFIG_INVALID')
    await server.client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'in/a.csv' }))
  })
})

describe('connect', () => {
  it('wrong credentials: names the bucket and the fix, never the secret', async () => {
    const bucket = await freshBucket()
    const secret = 'wrong-secret-4f9a1c77e2'
    setEnv({ AWS_ACCESS_KEY_ID: 'AKIAWRONGKEY0000', AWS_SECRET_ACCESS_KEY: secret })
    try {
      const source = s3({ bucket, prefix: 'in/', endpoint: server.endpoint, forcePathStyle: true })
      sources.push(source)
      const error = await failure(source.connect!(context))
      expect(error.message).toMatch(new RegExp(`^s3://${bucket}/in/ at 127\\.0\\.0\\.1:${server.port}: access denied \\(InvalidAccessKeyId\\): check the credentials the AWS SDK found`))
      expect(error.message).not.toContain(secret)
      expect(JSON.stringify(error)).not.toContain(secret)
    } finally {
      setEnv({ AWS_ACCESS_KEY_ID: S3RVER_KEY, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET })
    }
  })

  it('no credentials at all: says where the SDK looks', async () => {
    setEnv({ AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined })
    try {
      const source = s3({ bucket: 'anything', endpoint: server.endpoint, forcePathStyle: true })
      sources.push(source)
      const error = await failure(source.connect!(context))
      expect(error.message).toMatch(/^s3:\/\/anything\/ at [^:]+:\d+: no credentials: the AWS SDK found none \(set AWS_ACCESS_KEY_ID/)
    } finally {
      setEnv({ AWS_ACCESS_KEY_ID: S3RVER_KEY, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET })
    }
  })

  it('a missing bucket fails up front, naming it', async () => {
    const source = s3({ bucket: 'no-such-bucket', prefix: 'in', endpoint: server.endpoint, forcePathStyle: true })
    sources.push(source)
    const error = await failure(source.connect!(context))
    expect(error.code).toBe('PLUGIN_ERROR')
    expect(error.message).toBe(`s3://no-such-bucket/in/ at 127.0.0.1:${server.port}: the bucket does not exist`)
  })

  it('an endpoint nobody listens on: cannot reach it', async () => {
    const port = await closedPort()
    const source = s3({ bucket: 'data', endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true })
    sources.push(source)
    const error = await failure(source.connect!(context))
    expect(error.message).toBe(`s3://data/ at 127.0.0.1:${port}: cannot reach 127.0.0.1:${port} (ECONNREFUSED)`)
  })
})

describe('the AWS SDK on Node 20', () => {
  const WARNING_SWITCH = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'

  /** Runs an ES module in a fresh Node process (the SDK warns once per process), from the repository root. */
  function runModule(code: string): Promise<{ stdout: string; stderr: string }> {
    const env = { ...process.env }
    delete env[WARNING_SWITCH]
    return new Promise((resolve, reject) => {
      execFile(process.execPath, ['--input-type=module', '-e', code], { cwd: REPO_ROOT, env }, (error, stdout, stderr) =>
        error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve({ stdout, stderr }),
      )
    })
  }

  it('does not print its NodeVersionSupportWarning when the source builds a client, and leaves the environment as it was', async ({ skip }) => {
    const bare = await runModule(`import { S3Client } from '@aws-sdk/client-s3'; new S3Client({ region: 'us-east-1' })`)
    if (!bare.stderr.includes('NodeVersionSupportWarning')) {
      console.warn(`SKIPPING the NodeVersionSupportWarning test: the AWS SDK does not warn on Node ${process.version}, so there is nothing to keep quiet`)
      skip()
    }
    const bucket = await freshBucket()
    const { stdout, stderr } = await runModule(`
      import { createJiti } from 'jiti'
      const { s3 } = await createJiti(${JSON.stringify(`${REPO_ROOT}/`)}).import('./plugins/s3/index.ts')
      const source = s3({ bucket: ${JSON.stringify(bucket)}, endpoint: ${JSON.stringify(server.endpoint)}, forcePathStyle: true })
      await source.connect({ defaultInclude: ['**/*.csv'] })
      await source.close()
      console.log(JSON.stringify({ connected: true, switch: process.env.${WARNING_SWITCH} ?? null }))
    `)
    expect(JSON.parse(stdout)).toEqual({ connected: true, switch: null })
    expect(stderr).not.toContain('NodeVersionSupportWarning')
  })
})

/** A loopback port that was free a moment ago and has no listener now. */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number }
      probe.close(() => resolve(port))
    })
  })
}
