import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync, existsSync, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { inspect } from 'node:util'
import ssh2 from 'ssh2'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { env, type ResolvedConfig, type Source, type SourceContext, type SourceEntry } from '../core/index.js'
import { sftp, type SftpSourceOptions } from '../plugins/sftp/index.js'
import { fingerprintOf, startSftp, type SftpServer } from './helpers/sftp-server.js'
import { waitFor } from './helpers/workspace.js'

/**
 * The SFTP source against a real SFTP server on loopback (ssh2's Server over
 * a temp directory): no mocks. Each test gets its own remote directory.
 */

const PASSWORD = 'Tr0ub4dor&3-sftp-secret'
const CLIENT_KEY = ssh2.utils.generateKeyPairSync('ed25519')
const OTHER_KEY = ssh2.utils.generateKeyPairSync('ed25519')

let tmp: string
let root: string
let server: SftpServer
const opened: Source[] = []

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'filedge-sftp-'))
  root = path.join(tmp, 'root')
  mkdirSync(root)
  server = await startSftp({ root, users: { alice: { password: PASSWORD }, bob: { publicKey: CLIENT_KEY.public } } })
})

afterEach(async () => {
  await Promise.all(opened.splice(0).map((source) => source.close?.()))
})

afterAll(async () => {
  await server.stop()
  rmSync(tmp, { recursive: true, force: true })
})

let dirs = 0

/** A fresh remote directory, written through the server's local disk. */
function drop() {
  const name = `drop${++dirs}`
  const local = (relative: string) => path.join(root, name, relative)
  mkdirSync(local('.'))
  return {
    path: `/${name}`,
    local,
    /** Writes a file; `mtime` in whole seconds, so versions are known in advance. */
    write(relative: string, content: string | Buffer, mtime = 1_700_000_000) {
      mkdirSync(path.dirname(local(relative)), { recursive: true })
      writeFileSync(local(relative), content)
      utimesSync(local(relative), mtime, mtime)
    },
    /** The entry path the source gives a file of this directory. */
    entryPath: (relative: string) => `sftp://127.0.0.1:${server.port}/${name}/${relative}`,
  }
}

function context(defaultInclude: string[] = ['**/*.csv']) {
  const warnings: string[] = []
  const ctx: SourceContext = {
    // The source reads nothing of the resolved config.
    config: {} as ResolvedConfig,
    logger: { debug() {}, info() {}, warn: (message) => warnings.push(message), error() {} },
    defaultInclude,
  }
  return { ctx, warnings }
}

function make(options: Partial<SftpSourceOptions> & Pick<SftpSourceOptions, 'path'>): Source {
  const source = sftp({ host: '127.0.0.1', port: server.port, username: 'alice', password: PASSWORD, ...options })
  opened.push(source)
  return source
}

async function connected(options: Partial<SftpSourceOptions> & Pick<SftpSourceOptions, 'path'>, defaultInclude?: string[]) {
  const source = make(options)
  const { ctx, warnings } = context(defaultInclude)
  await source.connect?.(ctx)
  return { source, warnings }
}

async function list(source: Source, warnings: string[] = []): Promise<SourceEntry[]> {
  const entries: SourceEntry[] = []
  for await (const entry of source.list({ signal: new AbortController().signal, warn: (message) => warnings.push(message) })) entries.push(entry)
  return entries
}

async function readAll(source: Source, entry: SourceEntry): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of await source.read(entry, { signal: new AbortController().signal })) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** The error a promise rejects with (failing the test if it resolves). */
async function failure(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise
  } catch (error) {
    return error as Error & { code?: string }
  }
  throw new Error('expected a rejection')
}

/** A secret must be in none of the ways an error gets printed or stored. */
function expectNoSecret(error: Error, secret: string) {
  expect(error.message).not.toContain(secret)
  expect(JSON.stringify(error)).not.toContain(secret)
  expect(inspect(error, { depth: 10 })).not.toContain(secret)
}

describe('sftp source: listing', () => {
  it('walks nested directories in name order, matching include/exclude like a local folder, skipping dotfiles, dot-directories, temp files and links', async () => {
    const dir = drop()
    dir.write('b.csv', 'b\n')
    dir.write('a.csv', 'a,1\n', 1_700_000_123)
    dir.write('notes.txt', 'not data')
    dir.write('m/d.csv', 'd\n')
    dir.write('m/deep/e.csv', 'e\n')
    dir.write('z/c.csv', 'c\n')
    dir.write('.hidden.csv', 'h\n')
    dir.write('.git/f.csv', 'f\n')
    dir.write('upload.csv.part', 'p\n')
    dir.write('skip/g.csv', 'g\n')
    writeFileSync(path.join(tmp, 'outside.csv'), 'secret,stuff\n')
    symlinkSync(path.join(tmp, 'outside.csv'), dir.local('link.csv'))

    const { source } = await connected({ path: dir.path, exclude: ['skip/**'] })
    const warnings: string[] = []
    const entries = await list(source, warnings)

    expect(entries.map((entry) => entry.path)).toEqual(['a.csv', 'b.csv', 'm/d.csv', 'm/deep/e.csv', 'z/c.csv'].map(dir.entryPath))
    expect(entries[0]).toEqual({ path: dir.entryPath('a.csv'), size: 4, version: '1700000123:4', modifiedAt: 1_700_000_123_000 })
    expect(warnings).toEqual([`${dir.entryPath('link.csv')}: a symbolic link; not followed (an SFTP source never follows links)`])
  })

  it('uses the pipeline default includes when the source names none, and its own include when it does', async () => {
    const dir = drop()
    dir.write('a.csv', 'a\n')
    dir.write('b.ndjson', '{}\n')
    const byDefault = await connected({ path: dir.path }, ['**/*.ndjson'])
    expect((await list(byDefault.source)).map((entry) => entry.path)).toEqual([dir.entryPath('b.ndjson')])
    const own = await connected({ path: dir.path, include: ['*.csv'] }, ['**/*.ndjson'])
    expect((await list(own.source)).map((entry) => entry.path)).toEqual([dir.entryPath('a.csv')])
  })

  it('describes itself as sftp://user@host:port/path, with no secret', async () => {
    const source = make({ path: '/drop', password: PASSWORD })
    expect(source.describe()).toBe(`sftp://alice@127.0.0.1:${server.port}/drop`)
    expect(sftp({ host: 'files.example.com', username: 'u', password: 'pw-123456', path: 'in' }).describe()).toBe('sftp://u@files.example.com:22/~/in')
  })

  it('resolves a relative path against the home directory, and names entries by absolute remote path', async () => {
    const dir = drop()
    dir.write('a.csv', 'a\n')
    const { source } = await connected({ path: dir.path.slice(1) })
    expect((await list(source)).map((entry) => entry.path)).toEqual([dir.entryPath('a.csv')])
  })
})

describe('sftp source: reading', () => {
  it('reads the exact bytes of a file', async () => {
    const dir = drop()
    const bytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(200_000)])
    dir.write('data.csv', bytes)
    const { source } = await connected({ path: dir.path })
    const [entry] = await list(source)
    expect(entry.size).toBe(bytes.length)
    expect((await readAll(source, entry)).equals(bytes)).toBe(true)
  })

  it('gives an overwritten file a new version, and refuses a stale entry with FILE_CHANGED', async () => {
    const dir = drop()
    dir.write('a.csv', 'first\n', 1_700_000_000)
    const { source } = await connected({ path: dir.path })
    const [stale] = await list(source)

    dir.write('a.csv', 'second, longer\n', 1_700_000_060)
    const [fresh] = await list(source)
    expect(fresh.version).not.toBe(stale.version)
    expect(fresh.version).toBe('1700000060:15')

    const error = await failure(source.read(stale, { signal: new AbortController().signal }))
    expect(error).toMatchObject({ code: 'FILE_CHANGED', file: stale.path })
    expect((await readAll(source, fresh)).toString()).toBe('second, longer\n')
  })

  it('says FILE_GONE for a file deleted between listing and reading', async () => {
    const dir = drop()
    dir.write('a.csv', 'a\n')
    const { source } = await connected({ path: dir.path })
    const [entry] = await list(source)
    unlinkSync(dir.local('a.csv'))
    const error = await failure(source.read(entry, { signal: new AbortController().signal }))
    expect(error).toMatchObject({ code: 'FILE_GONE', file: entry.path })
  })

  it('stat gives the entry as listed, undefined once the file is gone, and refuses paths of other sources', async () => {
    const dir = drop()
    dir.write('sub/a.csv', 'a\n')
    const { source } = await connected({ path: dir.path })
    const [entry] = await list(source)
    expect(await source.stat?.(entry.path)).toEqual(entry)
    unlinkSync(dir.local('sub/a.csv'))
    expect(await source.stat?.(entry.path)).toBeUndefined()
    await expect(source.stat?.('sftp://elsewhere/x.csv')).rejects.toThrow(/not a file of this source/)
    await expect(source.stat?.(`sftp://127.0.0.1:${server.port}${dir.path}/../etc/passwd`)).rejects.toThrow(/not a file of this source/)
  })
})

describe('sftp source: archive', () => {
  it('deletes a committed file, and a second delete finds it already gone', async () => {
    const dir = drop()
    dir.write('a.csv', 'a\n')
    const { source } = await connected({ path: dir.path })
    const [entry] = await list(source)
    expect(await source.archive?.(entry, { kind: 'delete' })).toBe(`deleted ${entry.path}`)
    expect(existsSync(dir.local('a.csv'))).toBe(false)
    expect(await source.archive?.(entry, { kind: 'delete' })).toBe('already gone')
  })

  it('moves a file under a directory relative to path or absolute, keeping its subpath and creating directories', async () => {
    const dir = drop()
    dir.write('in/2024/a.csv', 'a\n')
    dir.write('b.csv', 'b\n')
    const { source } = await connected({ path: dir.path, exclude: ['.done/**'] })
    const [b, a] = await list(source)
    expect(a.path).toBe(dir.entryPath('in/2024/a.csv'))

    expect(await source.archive?.(a, { kind: 'move', to: '.done' })).toBe(`moved to ${dir.entryPath('.done/in/2024/a.csv')}`)
    expect(readFileSync(dir.local('.done/in/2024/a.csv'), 'utf8')).toBe('a\n')
    expect(existsSync(dir.local('in/2024/a.csv'))).toBe(false)
    expect(await source.archive?.(a, { kind: 'move', to: '.done' })).toBe('already gone')

    const absolute = `${dir.path}-archive/x`
    expect(await source.archive?.(b, { kind: 'move', to: absolute })).toBe(`moved to sftp://127.0.0.1:${server.port}${absolute}/b.csv`)
    expect(readFileSync(path.join(root, absolute, 'b.csv'), 'utf8')).toBe('b\n')
  })

  it('leaves a file in place when it changed since it was listed, or when the archive already holds that name', async () => {
    const dir = drop()
    dir.write('a.csv', 'a\n', 1_700_000_000)
    dir.write('b.csv', 'b\n')
    dir.write('.done/b.csv', 'an earlier b\n')
    const { source } = await connected({ path: dir.path })
    const [a, b] = await list(source)

    dir.write('a.csv', 'a, rewritten\n', 1_700_000_100)
    for (const action of [{ kind: 'delete' }, { kind: 'move', to: '.done' }] as const) {
      expect(await source.archive?.(a, action)).toBe('left in place: changed since it was loaded (version 1700000000:2, now 1700000100:13)')
    }
    expect(readFileSync(dir.local('a.csv'), 'utf8')).toBe('a, rewritten\n')

    expect(await source.archive?.(b, { kind: 'move', to: '.done' })).toBe(`left in place: ${dir.entryPath('.done/b.csv')} already exists`)
    expect(readFileSync(dir.local('b.csv'), 'utf8')).toBe('b\n')
    expect(readFileSync(dir.local('.done/b.csv'), 'utf8')).toBe('an earlier b\n')
  })
})

describe('sftp source: credentials and errors', () => {
  it('takes the password from env(), and says which variable is unset without printing any value', async () => {
    const dir = drop()
    dir.write('a.csv', 'a\n')
    process.env.FILEDGE_TEST_SFTP_PASSWORD = PASSWORD
    try {
      const { source } = await connected({ path: dir.path, password: env('FILEDGE_TEST_SFTP_PASSWORD') })
      expect(await list(source)).toHaveLength(1)
    } finally {
      delete process.env.FILEDGE_TEST_SFTP_PASSWORD
    }
    const error = await failure(make({ path: dir.path, password: env('FILEDGE_TEST_SFTP_PASSWORD') }).connect!(context().ctx))
    expect(error).toMatchObject({ code: 'CONFIG_INVALID' })
    expect(error.message).toBe(`sftp://alice@127.0.0.1:${server.port}${dir.path}: environment variable FILEDGE_TEST_SFTP_PASSWORD (password) is not set`)
  })

  it.each(['a literal string', 'env()'])('a wrong password (given as %s) fails with "authentication failed", naming the source and never the password', async (given) => {
    const dir = drop()
    const wrong = `not-the-password-${randomBytes(6).toString('hex')}`
    process.env.FILEDGE_TEST_SFTP_WRONG = wrong
    try {
      const source = make({ path: dir.path, password: given === 'env()' ? env('FILEDGE_TEST_SFTP_WRONG') : wrong })
      const error = await failure(source.connect!(context().ctx))
      expect(error).toMatchObject({ code: 'PLUGIN_ERROR' })
      expect(error.message).toBe(`${source.describe()}: authentication failed for user "alice" (tried password)`)
      expectNoSecret(error, wrong)
      expectNoSecret(error, PASSWORD)
    } finally {
      delete process.env.FILEDGE_TEST_SFTP_WRONG
    }
  })

  it('authenticates with a private key from env(); a key the server does not know fails without printing it', async () => {
    const dir = drop()
    dir.write('a.csv', 'a\n')
    process.env.FILEDGE_TEST_SFTP_KEY = CLIENT_KEY.private
    try {
      const { source } = await connected({ path: dir.path, username: 'bob', password: undefined, privateKey: env('FILEDGE_TEST_SFTP_KEY') })
      expect((await list(source)).map((entry) => entry.path)).toEqual([dir.entryPath('a.csv')])
    } finally {
      delete process.env.FILEDGE_TEST_SFTP_KEY
    }
    const source = make({ path: dir.path, username: 'bob', password: undefined, privateKey: OTHER_KEY.private })
    const error = await failure(source.connect!(context().ctx))
    expect(error.message).toBe(`${source.describe()}: authentication failed for user "bob" (tried privateKey)`)
    const keyBody = OTHER_KEY.private.split('\n')[1]
    expectNoSecret(error, keyBody)
  })

  it('a missing directory fails connect with "no such directory"', async () => {
    const source = make({ path: '/no/such/dir' })
    const error = await failure(source.connect!(context().ctx))
    expect(error).toMatchObject({ code: 'PLUGIN_ERROR', message: `sftp://alice@127.0.0.1:${server.port}/no/such/dir: no such directory` })
    expectNoSecret(error, PASSWORD)
  })

  it('refuses a server whose host key is not the pinned one, naming the host and both fingerprints', async () => {
    const dir = drop()
    const pinned = fingerprintOf(OTHER_KEY.public)
    const source = make({ path: dir.path, hostKey: pinned })
    const error = await failure(source.connect!(context().ctx))
    expect(error).toMatchObject({ code: 'PLUGIN_ERROR' })
    expect(error.message).toContain(`sftp://alice@127.0.0.1:${server.port}${dir.path}: host key mismatch: expected ${pinned} got ${server.fingerprint}`)
    expectNoSecret(error, PASSWORD)
  })

  it('accepts the pinned host key silently; unpinned, it logs the fingerprint once, across reconnections', async () => {
    const dir = drop()
    dir.write('a.csv', 'a\n')
    const pinned = await connected({ path: dir.path, hostKey: server.fingerprint })
    expect(await list(pinned.source)).toHaveLength(1)
    expect(pinned.warnings).toEqual([])

    const unpinned = await connected({ path: dir.path })
    expect(unpinned.warnings).toEqual([
      `sftp://alice@127.0.0.1:${server.port}${dir.path}: host key ${server.fingerprint} accepted without checking; pin it with hostKey: '${server.fingerprint}'`,
    ])
    server.dropConnections()
    expect(await list(unpinned.source)).toHaveLength(1)
    expect(unpinned.warnings).toHaveLength(1)
  })

  it('checks its options when built', () => {
    const base = { host: 'h', username: 'u', path: '/in' }
    expect(() => sftp(base)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(/set password or privateKey/) }))
    expect(() => sftp({ ...base, password: 'pw-12345', hostKey: 'MD5:aa:bb' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(/hostKey/) }))
    expect(() => sftp({ ...base, password: 'pw-12345', port: 0 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(/port/) }))
  })
})

describe('sftp source: connection failures', () => {
  it.each([
    ['while a read request is pending', false],
    ['while the reader is paused with its buffer full, no request pending', true],
  ])(
    'errors a read when the server drops the connection mid-file (%s), instead of hanging or ending short',
    async (_, paused) => {
      const dir = drop()
      const size = 8 * 1024 * 1024
      dir.write('big.csv', randomBytes(size))
      const { source } = await connected({ path: dir.path })
      const [entry] = await list(source)

      const stream = await source.read(entry, { signal: new AbortController().signal })
      const chunks = stream[Symbol.asyncIterator]()
      let received = ((await chunks.next()).value as Buffer).length
      if (paused) await waitFor(() => stream.readableLength >= stream.readableHighWaterMark, 10_000, 'the read buffer to fill')
      server.dropConnections()
      // ssh2 answers the requests pending when a connection drops; a read sent after it would wait for ever.
      if (paused) await waitFor(() => server.connections === 0, 10_000, 'the server to close its sockets')

      const error = await failure(
        (async () => {
          for (let next = await chunks.next(); !next.done; next = await chunks.next()) received += (next.value as Buffer).length
        })(),
      )
      expect(error).toMatchObject({ code: 'PLUGIN_ERROR', message: expect.stringMatching(/connection lost/) })
      expect(error.message).toContain(`reading ${entry.path}`)
      expect(received).toBeLessThan(size)
    },
    20_000,
  )

  it('lists again after a server restart between two lists, with the same source object', async () => {
    const dir = drop()
    dir.write('a.csv', 'a\n')
    const { source } = await connected({ path: dir.path })
    expect(await list(source)).toHaveLength(1)
    await server.restart()
    dir.write('b.csv', 'b\n')
    expect((await list(source)).map((entry) => entry.path)).toEqual([dir.entryPath('a.csv'), dir.entryPath('b.csv')])
  })

  it('opens the connection again when it drops during a listing, and finishes the listing', async () => {
    const dir = drop()
    dir.write('a.csv', 'a\n')
    dir.write('sub/b.csv', 'b\n')
    const { source } = await connected({ path: dir.path })
    server.cutOnNext('READDIR')
    expect((await list(source)).map((entry) => entry.path)).toEqual([dir.entryPath('a.csv'), dir.entryPath('sub/b.csv')])
  })

  it('an archive whose reply was lost with the connection is retried once, and finds its own work done', async () => {
    const dir = drop()
    dir.write('a.csv', 'a\n')
    dir.write('b.csv', 'b\n')
    const { source } = await connected({ path: dir.path })
    const [a, b] = await list(source)
    server.cutOnNext('REMOVE')
    expect(await source.archive?.(a, { kind: 'delete' })).toBe('already gone')
    expect(existsSync(dir.local('a.csv'))).toBe(false)
    server.cutOnNext('RENAME')
    expect(await source.archive?.(b, { kind: 'move', to: '.done' })).toBe('already gone')
    expect(readFileSync(dir.local('.done/b.csv'), 'utf8')).toBe('b\n')
  })

  it('says "connection refused" while the server is down, and works again once it is back', async () => {
    const dir = drop()
    dir.write('a.csv', 'a\n')
    const { source } = await connected({ path: dir.path })
    await server.stop()
    try {
      const error = await failure(list(source))
      expect(error).toMatchObject({ code: 'PLUGIN_ERROR', message: `${source.describe()}: connection refused` })
      expectNoSecret(error, PASSWORD)
    } finally {
      await server.restart()
    }
    expect(await list(source)).toHaveLength(1)
  })
})
