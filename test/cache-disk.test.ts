import { spawn, spawnSync } from 'node:child_process'
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { keyName } from '../plugins/cache/codec.js'
import { createDiskCache } from '../plugins/cache/disk.js'
import type { BuiltinCache, Cache, CacheValue, DiskCacheOptions } from '../plugins/cache/types.js'
import { REPO_ROOT } from './helpers/workspace.js'

/**
 * The disk cache on real directories, with real child processes (test/helpers/cache-disk-worker.mjs
 * runs the built module: `npm run build` first).
 */

const WORKER = path.join(REPO_ROOT, 'test/helpers/cache-disk-worker.mjs')
const BUILT = path.join(REPO_ROOT, 'dist/plugins/cache/disk.js')

const dirs: string[] = []
const caches: Cache[] = []
afterEach(async () => {
  await Promise.all(caches.splice(0).map((cache) => cache.close()))
})
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'filedge-cache-'))
  dirs.push(dir)
  return dir
}

function openCache(options: Partial<DiskCacheOptions> = {}): BuiltinCache {
  const cache = createDiskCache({ dir: options.dir ?? tempDir(), ...options })
  caches.push(cache)
  return cache
}

function entryFiles(dir: string, key: string): { meta: string; data: string } {
  const hash = keyName(key)
  const meta = path.join(dir, 'v1/meta', hash.slice(0, 2), `${hash}.json`)
  const { data } = JSON.parse(readFileSync(meta, 'utf8')) as { data: string }
  return { meta, data: path.join(dir, 'v1/data', hash.slice(0, 2), data) }
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name))
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const started = Date.now()
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

function worker(args: string[]): { pid: number; kill: (signal: NodeJS.Signals) => void; exited: Promise<Exit> } {
  if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run \`npm run build\` before this suite`)
  const child = spawn(process.execPath, [WORKER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  child.stderr.on('data', (chunk) => (stderr += chunk))
  const exited = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })))
  return { pid: child.pid!, kill: (signal) => child.kill(signal), exited }
}

async function workerResult<T>(args: string[]): Promise<T> {
  const { code, stdout, stderr } = await worker(args).exited
  expect(stderr).toBe('')
  expect(code).toBe(0)
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as T
}

function deadPid(): number {
  const pid = spawnSync(process.execPath, ['-e', '']).pid
  if (pid === undefined) throw new Error('could not start a process to get a dead pid')
  return pid
}

const VALUES: [string, CacheValue][] = [
  ['a string', 'hello'],
  ['a string that looks like JSON', '{"a":1}'],
  ['the empty string', ''],
  ['unicode', 'héllo wörld ✓ 日本語 🙂'],
  ['a Buffer', Buffer.from([0, 1, 2, 255])],
  ['an empty Buffer', Buffer.alloc(0)],
  ['a Uint8Array', new Uint8Array([9, 8, 7])],
  ['an object', { a: 1, b: 'two' }],
  ['an array', [1, 'two', false]],
  ['nested data', { list: [{ deep: [null, { x: -1.5 }] }], empty: {}, none: [] }],
  ['a number', 42.5],
  ['zero', 0],
  ['true', true],
  ['false', false],
  ['null', null],
]

describe('values', () => {
  it.each([false, 'gzip', 'brotli'] as const)('come back as they were set (compress: %s)', async (compress) => {
    const cache = openCache({ compress })
    for (const [name, value] of VALUES) await cache.set(name, value)
    for (const [name, value] of VALUES) {
      const got = await cache.get(name)
      expect(got, name).toStrictEqual(value)
      expect(Buffer.isBuffer(got), name).toBe(Buffer.isBuffer(value))
    }
    expect((await cache.info('a Uint8Array'))?.compression).toBe(compress === false ? null : compress)
    expect((await cache.info('a string that looks like JSON'))?.type).toBe('string')
  })

  it('records the compression per entry: an entry reads back whatever the cache now defaults to', async () => {
    const dir = tempDir()
    const brotli = openCache({ dir, compress: 'brotli' })
    await brotli.set('k', { text: 'x'.repeat(1000) })
    await brotli.close()
    const plain = openCache({ dir })
    expect(await plain.get('k')).toStrictEqual({ text: 'x'.repeat(1000) })
    expect(await plain.info('k')).toMatchObject({ compression: 'brotli', type: 'json', size: '{"text":""}'.length + 1000 })
    expect((await plain.info('k'))!.storedSize).toBeLessThan(100)
  })

  const REFUSED: [string, unknown][] = [
    ['undefined', undefined],
    ['a Date', new Date()],
    ['a Map', new Map()],
    ['a class instance', new (class Point {})()],
    ['a cycle', (() => { const o: Record<string, unknown> = {}; o.self = o; return o })()],
    ['NaN', Number.NaN],
    ['-0', -0],
    ['a function', () => 1],
    ['a bigint', 10n],
    ['NaN inside an array', [1, Number.NaN]],
  ]

  it.each(REFUSED)('refuses %s with a clear error and stores nothing', async (_name, value) => {
    const dir = tempDir()
    const cache = openCache({ dir })
    await cache.set('kept', 'before')
    await expect(cache.set('kept', value as CacheValue)).rejects.toMatchObject({ code: 'USAGE', message: /^cache: the value/ })
    await expect(cache.set('new', value as CacheValue)).rejects.toMatchObject({ code: 'USAGE' })
    expect(await cache.get('kept')).toBe('before')
    expect(await cache.has('new')).toBe(false)
    expect(filesUnder(path.join(dir, 'v1/data'))).toHaveLength(1)
    expect(filesUnder(path.join(dir, 'v1/tmp'))).toEqual([])
  })

  it('streams: setStream stores bytes (compressed if asked), getStream gives them back decompressed, get gives a Buffer', async () => {
    const cache = openCache()
    const chunks = Array.from({ length: 50 }, (_, i) => Buffer.from(`line ${i} of a streamed value\n`))
    for (const compress of [false, 'gzip', 'brotli'] as const) {
      const info = await cache.setStream(`s-${compress}`, Readable.from(chunks), { compress })
      expect(info).toMatchObject({ type: 'bytes', compression: compress === false ? null : compress, size: Buffer.concat(chunks).length })
      const stream = await cache.getStream(`s-${compress}`)
      expect(Buffer.concat(await stream!.toArray())).toStrictEqual(Buffer.concat(chunks))
      expect(await cache.get(`s-${compress}`)).toStrictEqual(Buffer.concat(chunks))
    }
    // An async iterable of Uint8Arrays (not a Readable) works too.
    await cache.setStream('iterable', (async function* () { yield new Uint8Array([1, 2]); yield new Uint8Array([3]) })())
    expect(await cache.get('iterable')).toStrictEqual(Buffer.from([1, 2, 3]))
  })

  it("getStream of a value that was set gives its bytes: a string's UTF-8, the JSON text", async () => {
    const cache = openCache({ compress: 'gzip' })
    await cache.set('s', 'héllo')
    await cache.set('j', { a: [1, 2] })
    expect(Buffer.concat(await (await cache.getStream('s'))!.toArray()).toString()).toBe('héllo')
    expect(Buffer.concat(await (await cache.getStream('j'))!.toArray()).toString()).toBe('{"a":[1,2]}')
    expect(await cache.getStream('missing')).toBeUndefined()
  })

  it('a source stream that fails leaves the previous value in place and no temp file', async () => {
    const dir = tempDir()
    const cache = openCache({ dir })
    await cache.set('k', 'before')
    const failing = (async function* () {
      yield Buffer.from('partial')
      throw new Error('upstream broke')
    })()
    await expect(cache.setStream('k', failing)).rejects.toThrow('upstream broke')
    // The source's own error, as it was thrown (not dressed as a cache error).
    await expect(cache.setStream('k', createReadStream(path.join(dir, 'no such file')))).rejects.toMatchObject({ code: 'ENOENT' })
    expect(await cache.get('k')).toBe('before')
    expect(filesUnder(path.join(dir, 'v1/tmp'))).toEqual([])
  })
})

describe('keys', () => {
  const KEYS = ['../../etc/passwd', '/abs/path', '\0', 'a/b\\c', '..', 'x'.repeat(10_000), 'https://host/file?token=s3cr3t-t0ken']

  it('any key stays inside the directory, reads back, and is never written down', async () => {
    const dir = tempDir()
    const cache = openCache({ dir })
    for (const [i, key] of KEYS.entries()) await cache.set(key, `value ${i}`)
    for (const [i, key] of KEYS.entries()) expect(await cache.get(key)).toBe(`value ${i}`)
    const files = filesUnder(dir)
    expect(files.length).toBe(1 + 2 * KEYS.length)
    for (const file of files) expect(path.relative(dir, file).startsWith('..')).toBe(false)
    const everything = files.map((file) => readFileSync(file, 'latin1')).join('\n')
    expect(everything).not.toContain('s3cr3t-t0ken')
    expect(everything).not.toContain('etc/passwd')
    expect(existsSync(path.join(tmpdir(), 'etc/passwd.json'))).toBe(false)
  })

  it('refuses an empty key', async () => {
    await expect(openCache().set('', 'v')).rejects.toMatchObject({ code: 'USAGE' })
  })
})

describe('ttl', () => {
  it('an entry is served until it expires, then never again, and is removed when met', async () => {
    const dir = tempDir()
    const cache = openCache({ dir })
    await cache.set('k', 'v', { ttl: 300 })
    const { expiresAt, createdAt } = (await cache.info('k'))!
    expect(expiresAt).toBe(createdAt + 300)
    const value = await cache.get('k')
    if (Date.now() < expiresAt!) expect(value).toBe('v')
    const { meta } = entryFiles(dir, 'k')
    await waitFor(async () => (await cache.get('k')) === undefined, 'the entry to expire')
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt!)
    expect(existsSync(meta)).toBe(false)
    expect(filesUnder(path.join(dir, 'v1/data'))).toEqual([])
    expect(await cache.has('k')).toBe(false)
    expect((await cache.stats()).expired).toBe(1)
  })

  it('ttl 0 stores nothing and removes the previous value', async () => {
    const dir = tempDir()
    const cache = openCache({ dir })
    await cache.set('k', 'old')
    await cache.set('k', 'new', { ttl: 0 })
    expect(await cache.get('k')).toBeUndefined()
    await cache.set('s', 'old')
    expect(await cache.setStream('s', Readable.from([Buffer.from('new')]), { ttl: '0s' })).toBeUndefined()
    expect(await cache.has('s')).toBe(false)
    expect(filesUnder(path.join(dir, 'v1'))).toEqual([])
  })

  it('a negative or malformed ttl is refused, and the previous value stays', async () => {
    const cache = openCache()
    await cache.set('k', 'old')
    await expect(cache.set('k', 'new', { ttl: -1 })).rejects.toMatchObject({ code: 'USAGE', message: /ttl must be 0 or more/ })
    await expect(cache.set('k', 'new', { ttl: '5 minutes' })).rejects.toMatchObject({ code: 'USAGE' })
    expect(await cache.get('k')).toBe('old')
    expect(() => createDiskCache({ dir: tempDir(), ttl: -5 })).toThrow(/ttl must be 0 or more/)
  })

  it('Infinity or no ttl never expires; the cache default applies when a set gives none, and a set overrides it', async () => {
    const dir = tempDir()
    const forever = openCache({ dir })
    await forever.set('plain', 1)
    await forever.set('inf', 1, { ttl: Infinity })
    expect((await forever.info('plain'))!.expiresAt).toBeNull()
    expect((await forever.info('inf'))!.expiresAt).toBeNull()

    const hourly = openCache({ dir, ttl: '1h' })
    await hourly.set('default', 1)
    await hourly.set('short', 1, { ttl: 150 })
    await hourly.set('never', 1, { ttl: Infinity })
    const info = (key: string) => hourly.info(key).then((entry) => entry!.expiresAt! - entry!.createdAt)
    expect(await info('default')).toBe(3_600_000)
    expect(await info('short')).toBe(150)
    expect((await hourly.info('never'))!.expiresAt).toBeNull()

    const brief = openCache({ dir: tempDir(), ttl: 100 })
    await brief.set('default', 'd')
    await brief.set('kept', 'k', { ttl: Infinity })
    await waitFor(async () => !(await brief.has('default')), 'the default ttl to pass')
    expect(await brief.get('kept')).toBe('k')
  })
})

describe('recency', () => {
  it('get refreshes recency: with room for 3, reading a before adding d evicts b, not a', async () => {
    const cache = openCache({ maxEntries: 3 })
    for (const key of ['a', 'b', 'c']) await cache.set(key, key)
    expect(await cache.get('a')).toBe('a')
    await cache.set('d', 'd')
    expect(await cache.has('b')).toBe(false)
    for (const key of ['a', 'c', 'd']) expect(await cache.get(key)).toBe(key)
    expect(await cache.stats()).toMatchObject({ entries: 3, evictions: 1 })
  })

  it('getStream refreshes; has and info do not', async () => {
    const cache = openCache({ maxEntries: 3 })
    for (const key of ['a', 'b', 'c']) await cache.set(key, key)
    ;(await cache.getStream('a'))!.destroy()
    expect(await cache.has('b')).toBe(true)
    expect(await cache.info('b')).toBeDefined()
    await cache.set('d', 'd')
    expect(await cache.has('b')).toBe(false)
    expect(await cache.has('a')).toBe(true)
  })

  it('recency is kept on disk: a new cache on the same directory evicts what was used least', async () => {
    const dir = tempDir()
    const first = openCache({ dir })
    for (const key of ['a', 'b', 'c']) await first.set(key, key)
    await first.get('a')
    await first.close()
    const second = openCache({ dir, maxEntries: 3 })
    await second.set('d', 'd')
    expect(await second.has('b')).toBe(false)
    for (const key of ['a', 'c', 'd']) expect(await second.has(key)).toBe(true)
  })

  it('maxBytes counts stored bytes and evicts the least recently used', async () => {
    const cache = openCache({ maxBytes: 1000 })
    await cache.set('x', Buffer.alloc(400, 1))
    await cache.set('y', Buffer.alloc(400, 2))
    await cache.get('x')
    await cache.set('z', Buffer.alloc(400, 3))
    expect(await cache.has('y')).toBe(false)
    expect(await cache.get('x')).toStrictEqual(Buffer.alloc(400, 1))
    expect(await cache.stats()).toMatchObject({ entries: 2, bytes: 800, evictions: 1 })
    // Compressed, the same values take a few bytes each: all fit.
    const small = openCache({ maxBytes: 1000, compress: 'gzip' })
    for (const key of ['x', 'y', 'z']) await small.set(key, Buffer.alloc(400, 1))
    expect(await small.stats()).toMatchObject({ entries: 3, evictions: 0 })
  })
})

describe('many processes', () => {
  it('20 processes setting and reading one key: every read is one whole value, and the end state is one entry and no leftovers', async () => {
    const dir = tempDir()
    const go = path.join(dir, 'go')
    const KEY = 'shared key'
    const writers = Array.from({ length: 20 }, (_, id) => workerResult<{ reads: number; missesBeforeSet: number; missesAfterSet: number; bad: number; values: number[] }>(['contend', dir, KEY, String(id), '12', go]))
    writeFileSync(go, '')
    const results = await Promise.all(writers)
    for (const result of results) {
      expect(result.bad).toBe(0)
      expect(result.missesAfterSet).toBe(0)
      expect(result.reads).toBe(13)
    }
    // The reads saw each other's values, not only their own.
    expect(new Set(results.flatMap((result) => result.values)).size).toBeGreaterThan(1)
    const cache = openCache({ dir })
    const value = (await cache.get(KEY)) as Buffer
    expect(value.length).toBe(256 * 1024)
    expect(value.equals(Buffer.alloc(256 * 1024, value[0]))).toBe(true)
    expect(filesUnder(path.join(dir, 'v1/tmp'))).toEqual([])
    expect(filesUnder(path.join(dir, 'v1/locks'))).toEqual([])
    expect(filesUnder(path.join(dir, 'v1/data'))).toHaveLength(1)
    expect(filesUnder(path.join(dir, 'v1/meta'))).toHaveLength(1)
  })

  it('an entry another process wrote after this cache opened is found by its key (no rescan), and then counted', async () => {
    const dir = tempDir()
    const reader = openCache({ dir })
    expect(await reader.stats()).toMatchObject({ entries: 0 })
    const result = await workerResult<{ bad: number }>(['contend', dir, 'from another process', '5', '1', path.join(dir, 'CACHEDIR.TAG')])
    expect(result.bad).toBe(0)
    expect(await reader.get('from another process')).toStrictEqual(Buffer.alloc(256 * 1024, 5))
    expect(await reader.stats()).toMatchObject({ entries: 1, bytes: 256 * 1024, hits: 1 })
  })

  it('a writer SIGKILLed mid-write leaves the previous value readable; prune removes what it left', async () => {
    const dir = tempDir()
    const cache = openCache({ dir })
    const previous = Buffer.alloc(100_000, 7)
    await cache.set('k', previous)
    const child = worker(['slow', dir, 'k'])
    const tmp = path.join(dir, 'v1/tmp')
    let reads = 0
    await waitFor(async () => {
      expect(await cache.get('k')).toStrictEqual(previous)
      reads++
      return readdirSync(tmp).some((name) => name.startsWith(`${child.pid}-`) && statSync(path.join(tmp, name)).size > 0)
    }, 'the writer to start its temp file')
    child.kill('SIGKILL')
    expect((await child.exited).signal).toBe('SIGKILL')
    expect(reads).toBeGreaterThan(0)
    expect(await cache.get('k')).toStrictEqual(previous)
    expect(readdirSync(tmp)).not.toEqual([])

    const pruned = await cache.prune()
    expect(pruned.removed).toBe(0)
    expect(pruned.bytes).toBeGreaterThan(0)
    expect(readdirSync(tmp)).toEqual([])
    expect(await cache.get('k')).toStrictEqual(previous)
    expect((await cache.stats()).corrupt).toBe(0)
  })

  it('a new cache on the directory sweeps temp files of dead writers when it opens', async () => {
    const dir = tempDir()
    await openCache({ dir }).stats()
    const leftover = path.join(dir, 'v1/tmp', `${deadPid()}-abc123`)
    writeFileSync(leftover, 'half a value')
    await openCache({ dir }).stats()
    expect(existsSync(leftover)).toBe(false)
  })
})

describe('big streams', () => {
  it('1 GiB through setStream and getStream in bounded memory', async () => {
    const dir = tempDir()
    const result = await workerResult<{ written: string; read: string; readBytes: number; maxRssKb: number; wroteMs: number; readMs: number }>(['big', dir, String(2 ** 30), 'none'])
    console.info(`1 GiB: set ${result.wroteMs} ms, get ${result.readMs} ms, maxRSS ${Math.round(result.maxRssKb / 1024)} MB`)
    expect(result.readBytes).toBe(2 ** 30)
    expect(result.read).toBe(result.written)
    expect(result.maxRssKb).toBeLessThan(300 * 1024)
    rmSync(dir, { recursive: true, force: true })
  })

  it('64 MiB compressed through setStream and getStream', async () => {
    const dir = tempDir()
    const result = await workerResult<{ written: string; read: string; readBytes: number; maxRssKb: number; info: { storedSize: number; compression: string } }>(['big', dir, String(64 * 2 ** 20), 'gzip'])
    expect(result.readBytes).toBe(64 * 2 ** 20)
    expect(result.read).toBe(result.written)
    expect(result.info.compression).toBe('gzip')
    expect(result.info.storedSize).toBeLessThan(64 * 2 ** 20)
    expect(result.maxRssKb).toBeLessThan(300 * 1024)
  })
})

describe('damaged entries', () => {
  const damages: [string, (files: { meta: string; data: string }) => void][] = [
    ['a truncated value file', ({ data }) => truncateSync(data, 10)],
    ['a value file without its value', ({ data }) => rmSync(data)],
    ['unparsable metadata', ({ meta }) => writeFileSync(meta, '{"type":"str')],
    ['metadata naming a file outside the cache', ({ meta }) => writeFileSync(meta, JSON.stringify({ ...JSON.parse(readFileSync(meta, 'utf8')), data: '../../../../etc/passwd' }))],
  ]

  it.each(damages)('%s: get, getStream and has miss, the entry is removed and counted', async (_name, damage) => {
    const dir = tempDir()
    const cache = openCache({ dir })
    for (const read of ['get', 'getStream', 'has'] as const) {
      await cache.set(read, Buffer.alloc(5000, 1))
      damage(entryFiles(dir, read))
      expect(await cache[read](read), read).toBe(read === 'has' ? false : undefined)
      expect(await cache.get(read)).toBeUndefined()
    }
    expect(filesUnder(path.join(dir, 'v1/meta'))).toEqual([])
    expect((await cache.stats()).corrupt).toBe(3)
  })

  it('a flipped byte: get misses; getStream ends with an error naming the cache directory, not the key, and never ends cleanly', async () => {
    const dir = tempDir()
    const cache = openCache({ dir })
    const flip = (key: string) => {
      const { data } = entryFiles(dir, key)
      const bytes = readFileSync(data)
      bytes[bytes.length >> 1]! ^= 0xff
      writeFileSync(data, bytes)
    }
    for (const compress of [false, 'gzip'] as const) {
      await cache.set(`get-${compress}`, 'x'.repeat(100_000), { compress })
      flip(`get-${compress}`)
      // has checks presence and size, not every byte (that is what reading does).
      expect(await cache.has(`get-${compress}`)).toBe(true)
      expect(await cache.get(`get-${compress}`)).toBeUndefined()
      expect(await cache.has(`get-${compress}`)).toBe(false)

      const key = `secret-stream-key-${compress}`
      await cache.set(key, Buffer.alloc(300_000, 3), { compress })
      flip(key)
      const stream = (await cache.getStream(key))!
      const error = await stream.toArray().then(() => undefined, (failure: Error) => failure)
      expect(error).toMatchObject({ code: 'PLUGIN_ERROR' })
      expect(error!.message).toContain(dir)
      expect(error!.message).not.toContain('secret')
      expect(await cache.has(key)).toBe(false)
    }
    expect(filesUnder(path.join(dir, 'v1'))).toEqual([])
    expect((await cache.stats()).corrupt).toBe(4)
  })

  it('getStream with verify: a flipped byte is a miss before any byte is handed on; an intact entry streams whole', async () => {
    const dir = tempDir()
    const cache = openCache({ dir })
    const value = Buffer.alloc(3 * 1024 * 1024, 7)
    for (const compress of [false, 'brotli'] as const) {
      await cache.set(`intact-${compress}`, value, { compress })
      // Buffer.equals: toEqual walks 3 MiB element by element (seconds each).
      expect(Buffer.concat(await (await cache.getStream(`intact-${compress}`, { verify: true }))!.toArray()).equals(value)).toBe(true)
      await cache.set(`flipped-${compress}`, value, { compress })
      const { data } = entryFiles(dir, `flipped-${compress}`)
      const bytes = readFileSync(data)
      bytes[bytes.length - 1]! ^= 0xff
      writeFileSync(data, bytes)
      expect(await cache.getStream(`flipped-${compress}`, { verify: true })).toBeUndefined()
      expect(await cache.has(`flipped-${compress}`)).toBe(false)
    }
    expect((await cache.stats()).corrupt).toBe(2)
  })

  it('getReader: a flipped byte is a miss before any byte is read; an intact entry reads whole into the caller’s buffer, compressed or not', async () => {
    const dir = tempDir()
    const cache = openCache({ dir })
    const value = Buffer.from(Array.from({ length: 3 * 1024 * 1024 + 5 }, (_, i) => (i * 7) % 251))
    for (const compress of [false, 'gzip'] as const) {
      await cache.set(`intact-${compress}`, value, { compress })
      const reader = (await cache.getReader(`intact-${compress}`))!
      // Reads of odd sizes into one buffer, each after the last, until 0.
      const scratch = Buffer.alloc(100_003)
      const parts: Buffer[] = []
      for (let count; (count = await reader.read(scratch, 3, scratch.length - 3)) > 0; ) parts.push(Buffer.from(scratch.subarray(3, 3 + count)))
      await reader.close()
      await reader.close()
      expect(Buffer.concat(parts).equals(value)).toBe(true)
      await cache.set(`flipped-${compress}`, value, { compress })
      const { data } = entryFiles(dir, `flipped-${compress}`)
      const bytes = readFileSync(data)
      bytes[bytes.length - 1]! ^= 0xff
      writeFileSync(data, bytes)
      expect(await cache.getReader(`flipped-${compress}`)).toBeUndefined()
      expect(await cache.has(`flipped-${compress}`)).toBe(false)
    }
    expect(await cache.getReader('missing')).toBeUndefined()
    expect(await cache.stats()).toMatchObject({ hits: 2, misses: 3, corrupt: 2 })
  })

  it('getStream with verify checks an entry written before CRC-32s were kept by its SHA-256: intact streams, damaged is a miss', async () => {
    const dir = tempDir()
    const cache = openCache({ dir })
    const value = Buffer.alloc(2 * 1024 * 1024 + 17, 5)
    for (const key of ['old-intact', 'old-flipped']) {
      await cache.set(key, value)
      const { meta } = entryFiles(dir, key)
      const { crc32, ...older } = JSON.parse(readFileSync(meta, 'utf8')) as { crc32?: number }
      expect(typeof crc32).toBe('number')
      writeFileSync(meta, JSON.stringify(older))
    }
    expect(Buffer.concat(await (await cache.getStream('old-intact', { verify: true }))!.toArray()).equals(value)).toBe(true)
    const { data } = entryFiles(dir, 'old-flipped')
    const bytes = readFileSync(data)
    bytes[1024 * 1024 + 3]! ^= 0x01
    writeFileSync(data, bytes)
    expect(await cache.getStream('old-flipped', { verify: true })).toBeUndefined()
    expect((await cache.stats()).corrupt).toBe(1)
  })
})

const tmpfs = mountTmpfs()
function mountTmpfs(): { dir?: string; reason?: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'filedge-cache-full-'))
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { encoding: 'utf8' })
  if (mounted.status === 0) return { dir }
  rmSync(dir, { recursive: true, force: true })
  const reason = `cannot mount a 2 MB tmpfs (${(mounted.stderr || mounted.error?.message || '').trim()}); the full-disk test is skipped`
  console.warn(reason)
  return { reason }
}
afterAll(() => {
  if (tmpfs.dir === undefined) return
  spawnSync('umount', [tmpfs.dir])
  rmSync(tmpfs.dir, { recursive: true, force: true })
})

describe('a full disk', () => {
  it.skipIf(tmpfs.dir === undefined)('fails the write clearly, keeps earlier entries, and works again once space is freed', async () => {
    const dir = path.join(tmpfs.dir!, 'cache')
    const cache = openCache({ dir })
    await cache.set('small', 'still here')
    let stored = 0
    let failure: unknown
    while (failure === undefined && stored < 20) {
      await cache.set(`big-${stored}`, Buffer.alloc(256 * 1024, stored)).then(() => stored++, (error: unknown) => (failure = error))
    }
    expect(stored).toBeGreaterThan(2)
    expect(failure).toMatchObject({ code: 'PLUGIN_ERROR', message: expect.stringMatching(/no space left/) })
    expect((failure as Error).message).toContain(dir)
    expect(filesUnder(path.join(dir, 'v1/tmp'))).toEqual([])
    expect(await cache.get('small')).toBe('still here')
    expect(await cache.get('big-0')).toStrictEqual(Buffer.alloc(256 * 1024, 0))

    expect(await cache.delete('big-0')).toBe(true)
    await cache.set('after', Buffer.alloc(200 * 1024, 9))
    expect(await cache.get('after')).toStrictEqual(Buffer.alloc(200 * 1024, 9))
  })
})

describe('locks', () => {
  it('a write waiting longer than lockTimeout on a live lock fails, naming the lock file; reads do not wait', async () => {
    const dir = tempDir()
    const cache = openCache({ dir, lockTimeout: 200 })
    await cache.set('k', 'old')
    const lock = path.join(dir, 'v1/locks', `${keyName('k')}.lock`)
    writeFileSync(lock, JSON.stringify({ pid: process.pid, time: Date.now() }))
    const started = Date.now()
    const error = await cache.set('k', 'new').then(() => undefined, (failure: Error) => failure)
    expect(Date.now() - started).toBeGreaterThanOrEqual(200)
    expect(error).toMatchObject({ code: 'PLUGIN_ERROR' })
    expect(error!.message).toContain(lock)
    expect(error!.message).toContain(`process ${process.pid}`)
    expect(await cache.get('k')).toBe('old')
    expect(filesUnder(path.join(dir, 'v1/tmp'))).toEqual([])
    rmSync(lock)
    await cache.set('k', 'new')
    expect(await cache.get('k')).toBe('new')
  })

  it('a lock left by a dead process is taken over', async () => {
    const dir = tempDir()
    const cache = openCache({ dir, lockTimeout: 5_000 })
    await cache.stats()
    const lock = path.join(dir, 'v1/locks', `${keyName('k')}.lock`)
    writeFileSync(lock, JSON.stringify({ pid: deadPid(), time: Date.now() }))
    const started = Date.now()
    await cache.set('k', 'v')
    expect(Date.now() - started).toBeLessThan(2_000)
    expect(await cache.get('k')).toBe('v')
    expect(filesUnder(path.join(dir, 'v1/locks'))).toEqual([])
    expect(filesUnder(path.join(dir, 'v1/tmp'))).toEqual([])
  })
})

describe('prune, clear, stats, close', () => {
  it('prune removes expired and damaged entries and dead leftovers, and rescans', async () => {
    const dir = tempDir()
    const cache = openCache({ dir })
    await cache.set('live', Buffer.alloc(1000, 1))
    // Another process's entry, unknown to this one until the rescan.
    const other = createDiskCache({ dir })
    await other.set('other', Buffer.alloc(700, 4))
    await other.close()
    await cache.set('expiring', Buffer.alloc(2000, 2), { ttl: 50 })
    const { expiresAt } = (await cache.info('expiring')) ?? { expiresAt: 0 }
    await cache.set('damaged', Buffer.alloc(3000, 3))
    rmSync(entryFiles(dir, 'damaged').data)
    const orphan = path.join(dir, 'v1/data/00', `${'0'.repeat(64)}.dead`)
    mkdirSync(path.dirname(orphan), { recursive: true })
    writeFileSync(orphan, Buffer.alloc(4000))
    utimesSync(orphan, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000))
    const young = path.join(dir, 'v1/data/00', `${'0'.repeat(64)}.young`)
    writeFileSync(young, Buffer.alloc(10))
    writeFileSync(path.join(dir, 'v1/tmp', `${deadPid()}-leftover`), Buffer.alloc(500))
    await waitFor(() => Date.now() > expiresAt!, 'the ttl to pass')

    expect(await cache.prune()).toEqual({ removed: 2, bytes: 2000 + 4000 + 500 })
    expect(await cache.stats()).toMatchObject({ entries: 2, bytes: 1700, expired: 1, corrupt: 1 })
    expect(existsSync(orphan)).toBe(false)
    expect(existsSync(young)).toBe(true)
    expect(filesUnder(path.join(dir, 'v1/tmp'))).toEqual([])
  })

  it('prune evicts down to the limits of the cache that runs it', async () => {
    const dir = tempDir()
    const roomy = openCache({ dir })
    for (const key of ['a', 'b', 'c', 'd']) await roomy.set(key, Buffer.alloc(100))
    await roomy.get('a')
    const tight = openCache({ dir, maxEntries: 2 })
    expect(await tight.prune()).toEqual({ removed: 2, bytes: 200 })
    expect(await tight.stats()).toMatchObject({ entries: 2, evictions: 2 })
    expect(await tight.has('a')).toBe(true)
    expect(await tight.has('d')).toBe(true)
  })

  it('stats count what this cache did', async () => {
    const cache = openCache({ maxEntries: 10, maxBytes: 5000 })
    await cache.set('a', 'aaa')
    await cache.set('b', Buffer.alloc(10))
    await cache.get('a')
    await cache.get('nope')
    await (await cache.getStream('b'))!.toArray()
    expect(await cache.stats()).toEqual({
      location: expect.any(String),
      entries: 2,
      bytes: 13,
      maxEntries: 10,
      maxBytes: 5000,
      hits: 2,
      misses: 1,
      sets: 2,
      evictions: 0,
      expired: 0,
      corrupt: 0,
    })
  })

  it('clear removes every entry, including ones another cache wrote', async () => {
    const dir = tempDir()
    const cache = openCache({ dir })
    await cache.set('a', Buffer.alloc(10))
    await openCache({ dir }).set('b', Buffer.alloc(20))
    expect(await cache.clear()).toEqual({ removed: 2, bytes: 30 })
    expect(await cache.stats()).toMatchObject({ entries: 0, bytes: 0 })
    expect(await cache.get('b')).toBeUndefined()
    expect(filesUnder(path.join(dir, 'v1'))).toEqual([])
    expect(existsSync(path.join(dir, 'CACHEDIR.TAG'))).toBe(true)
  })

  it('a cache directory removed by hand while in use: reads miss, and the next write makes it again', async () => {
    const dir = tempDir()
    const cache = openCache({ dir })
    await cache.set('k', 'v')
    rmSync(dir, { recursive: true })
    expect(await cache.get('k')).toBeUndefined()
    await cache.set('k', 'again')
    expect(await cache.get('k')).toBe('again')
    expect(await cache.stats()).toMatchObject({ entries: 1 })
  })

  it('delete says whether there was an entry', async () => {
    const cache = openCache()
    await cache.set('k', 1)
    expect(await cache.delete('k')).toBe(true)
    expect(await cache.delete('k')).toBe(false)
  })

  it('close stops a pending write (its temp file removed) and further use fails clearly', async () => {
    const dir = tempDir()
    const cache = createDiskCache({ dir })
    await cache.set('k', 'v')
    // A source that gave one chunk and then nothing: close must not wait for its next one.
    const stalled = new Readable({ read() {} })
    stalled.push(Buffer.alloc(1024))
    const writing = cache.setStream('s', stalled)
    await waitFor(() => readdirSync(path.join(dir, 'v1/tmp')).some((name) => statSync(path.join(dir, 'v1/tmp', name)).size > 0), 'the write to start')
    await cache.close()
    await expect(writing).rejects.toMatchObject({ code: 'USAGE', message: /closed/ })
    expect(readdirSync(path.join(dir, 'v1/tmp'))).toEqual([])
    await expect(cache.get('k')).rejects.toMatchObject({ code: 'USAGE', message: expect.stringContaining(`${dir} was closed`) })
    expect(await openCache({ dir }).has('s')).toBe(false)
  })
})
