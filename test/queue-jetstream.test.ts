import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { gunzipSync } from 'node:zlib'
import { afterEach, expect, it } from 'vitest'
import { resolveConfig, type Destination, type LedgerStore, type LogEntry } from '../core/index.js'
import { openSqliteLedger } from '../core/ledger/sqlite/store.js'
import { jetstream, type QueueSource } from '../plugins/queue/index.js'
import { describeBroker, jetstreamQueue, NATS_SERVER, orders, type TestQueue } from './helpers/brokers.js'
import { queueSuite } from './helpers/queue-suite.js'

// The queue source against the machine's real NATS JetStream: the cases every broker runs (test/helpers/queue-suite.ts),
// then recovery driven in-process. One file, so its tests run one after the other: the suite restarts the server.
queueSuite('jetstream')

/**
 * The queue source driven in-process against the real NATS JetStream, for
 * the stops no signal can aim at: between the ledger's cursor advance and
 * the renames that promote a batch, and a ledger that lost what the folder
 * holds. The CLI, SIGKILL and broker-restart cases are in
 * test/helpers/queue-suite.ts.
 */

const none: Destination = { name: 'none', capabilities: { transactions: true, writeModes: ['append'] }, describe: () => 'nowhere', prepare: async () => {}, write: async () => ({ rows: 0 }) }

interface Project {
  readonly root: string
  readonly q: TestQueue
  readonly logs: LogEntry[]
  ledger(file?: string): LedgerStore
  source(ledger: LedgerStore, consumer?: string): Promise<QueueSource>
  dataFiles(): string[]
  staged(): string[]
  records(): string[]
}

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function project(): Promise<Project> {
  const q = await jetstreamQueue({ ackWait: '2s' })
  const root = mkdtempSync(path.join(os.tmpdir(), 'filedge-queue-recovery-'))
  const logs: LogEntry[] = []
  const dir = path.join(root, '.filedge/queue/orders')
  const ledgers: LedgerStore[] = []
  const sources: QueueSource[] = []
  cleanups.push(async () => {
    for (const source of sources) await source.close?.()
    for (const ledger of ledgers) await ledger.close()
    await q.remove()
    rmSync(root, { recursive: true, force: true })
  })
  const p: Project = {
    root,
    q,
    logs,
    ledger(file = '.filedge/ledger.db') {
      const ledger = openSqliteLedger(path.join(root, file))
      ledgers.push(ledger)
      return ledger
    },
    async source(ledger, consumer = 'filedge') {
      const source = jetstream({ servers: NATS_SERVER, stream: q.name, consumer, ackWait: '2s', maxRecords: 10, maxWait: '200ms' })
      sources.push(source)
      const config = resolveConfig({ lease: { ttl: '2s', heartbeat: '500ms' }, pipelines: [{ name: 'orders', source, destination: none, table: 'orders', columns: { id: 'string' } }] }, { cwd: root })
      const log = (level: LogEntry['level']) => (message: string) => logs.push({ level, message })
      await source.connect!({ config, logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') }, defaultInclude: [], pipelines: ['orders'], ledger, worker: 'test-worker' })
      return source
    },
    dataFiles: () => (existsSync(dir) ? readdirSync(dir).filter((name) => name.endsWith('.ndjson.gz')).sort() : []),
    staged: () => (existsSync(path.join(dir, '.staging')) ? readdirSync(path.join(dir, '.staging')).sort() : []),
    records: () =>
      p.dataFiles().flatMap((name) =>
        gunzipSync(readFileSync(path.join(dir, name)))
          .toString('utf8')
          .split('\n')
          .filter((line) => line !== '')
          .map((line) => (JSON.parse(line) as { id: string }).id),
      ),
  }
  return p
}

/** The ledger with its cursor advance going through and the process dying right after: before the batch's files are renamed in. */
function dyingAfterAdvance(ledger: LedgerStore): LedgerStore {
  let died = false
  return new Proxy(ledger, {
    get(target, key, receiver) {
      if (key === 'advanceCursor' && !died) {
        return async (...args: Parameters<LedgerStore['advanceCursor']>) => {
          await target.advanceCursor(...args)
          died = true
          throw new Error('the process died here')
        }
      }
      const value = Reflect.get(target, key, receiver) as unknown
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

const ids = (count: number, from = 1) => orders(count, from).map((message) => (JSON.parse(message.body as string) as { id: string }).id)
const signal = () => new AbortController().signal

describeBroker('jetstream', 'queue source recovery', () => {
  it('stopped between the ledger recording a batch and its renames: the next holder promotes it from staging, and its redelivered messages are acknowledged without a second file', async () => {
    const p = await project()
    await p.q.publish(orders(30))
    const ledger = p.ledger()
    const first = await (await p.source(dyingAfterAdvance(ledger))).consumeNow({ signal: signal() })
    expect(first.status).toBe('failed')
    expect(p.dataFiles()).toEqual([])
    expect(p.staged()).toEqual([expect.stringMatching(/^00000001-[0-9a-f]{12}\.manifest\.json$/), expect.stringMatching(/^00000001-[0-9a-f]{12}\.ndjson\.gz$/)])
    expect((await ledger.cursorEvents('queue:orders')).map((event) => JSON.parse(event.to).batch)).toEqual([1])

    // The next holder finishes batch 1, then goes on; the messages of batch 1 come back after the ack wait (2 s).
    const second = await (await p.source(ledger)).consumeNow({ signal: signal() })
    // 20 new records make 2 batches of maxRecords (10) each, unless a stall on a busy machine outlasted maxWait and closed one early:
    // then there are more, and the files and the cursor say the same.
    expect(second).toMatchObject({ status: 'consumed', records: 20, redelivered: 10 })
    expect(second.batches).toBeGreaterThanOrEqual(2)
    expect(p.dataFiles()).toHaveLength(1 + second.batches)
    expect(p.records().sort()).toEqual(ids(30).sort())
    expect(p.staged()).toEqual([])
    expect((await ledger.cursorEvents('queue:orders')).map((event) => JSON.parse(event.to).batch)).toEqual(Array.from({ length: 1 + second.batches }, (_, index) => index + 1))
    expect(await p.q.backlog()).toEqual({ ready: 0, unacknowledged: 0 })
  })

  it('a new ledger next to a folder of promoted batches moves its cursor over them, and a consumer reading the stream again writes nothing twice', async () => {
    const p = await project()
    await p.q.publish(orders(30))
    await (await p.source(p.ledger())).consumeNow({ signal: signal() })
    // Batches of maxRecords (10): three, or more when a stall on a busy machine outlasted maxWait and closed one early.
    const files = p.dataFiles()
    expect(files.length).toBeGreaterThanOrEqual(3)
    expect(p.records().sort()).toEqual(ids(30).sort())

    // Another ledger, and a new durable consumer that delivers the whole stream again.
    const fresh = p.ledger('.filedge/other-ledger.db')
    await p.q.publish(orders(5, 31))
    const report = await (await p.source(fresh, 'again')).consumeNow({ signal: signal() })
    expect(report).toMatchObject({ status: 'consumed', records: 5, redelivered: 30 })
    expect(p.dataFiles()).toHaveLength(files.length + report.batches)
    expect(p.dataFiles().slice(0, files.length)).toEqual(files)
    expect(p.dataFiles()[files.length]).toMatch(new RegExp(`^${String(files.length + 1).padStart(8, '0')}-`))
    expect(p.records().sort()).toEqual(ids(35).sort())
    expect((await fresh.cursorEvents('queue:orders')).map((event) => event.file)).toEqual(p.dataFiles().map((file) => `.filedge/queue/orders/${file}`))
    expect(p.logs.filter((entry) => entry.message.includes('promoted before the ledger recorded it'))).toHaveLength(files.length)
  })
})
