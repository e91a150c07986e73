import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { resolveConfig, type Destination } from '../core/index.js'
import { openSqliteLedger } from '../core/ledger/sqlite/store.js'
import { jetstream } from '../plugins/queue/index.js'
import { alternate, median, p95 } from './measure.js'
import { project, watcher } from './project.js'
import { format, perSecond, seconds, type BenchOptions, type Row } from './suites.js'

/**
 * The queue source (NATS JetStream) into DuckDB:
 *
 * - throughput: `--queue-messages` messages of 1 KB, published once into a
 *   stream, drained by `filedge` (a run: the real CLI consuming, promoting,
 *   acknowledging and loading every batch) against a plain consumer that
 *   only acknowledges each message (the same client, a durable pull consumer
 *   of its own, in this process): the physical limit of reading the stream
 *   here. Each rep reads the whole stream again from a new durable consumer,
 *   the two sides alternated.
 * - latency in watch mode: messages published at a steady rate while
 *   `filedge --watch` runs; for each, from just before its publish to the
 *   commit of the file that holds it (the `file:committed` event, stamped on
 *   arrival; the manifests say which file holds which sequence).
 *
 * Needs the machine's NATS with JetStream (FILEDGE_BENCH_NATS, default
 * 127.0.0.1:4222); a row says so when it is unreachable.
 */

const SERVER = process.env.FILEDGE_BENCH_NATS ?? '127.0.0.1:4222'
const COLUMNS = "{ id: { type: 'string', required: true }, n: 'integer', customer: 'string', amount: 'float', at: 'timestamp', note: 'string' }"
const IMPORTS = "import { duckdb } from 'filedge/plugins/duckdb'\nimport { jetstream } from 'filedge/plugins/queue'"
const LATENCY_RATE = 1_000
const LATENCY_SECONDS = 5
const LATENCY_MAX_WAIT = 100

/** A 1 KB order as JSON (1,024 bytes). */
function message(n: number): Uint8Array {
  const head = { id: `o-${n}`, n, customer: `c-${n % 997}`, amount: Math.round(n * 7.31) / 100, at: new Date(1_700_000_000_000 + n * 1000).toISOString() }
  const bare = JSON.stringify({ ...head, note: '' })
  return new TextEncoder().encode(JSON.stringify({ ...head, note: 'x'.repeat(1024 - bare.length) }))
}

type Nats = typeof import('@nats-io/transport-node')
type Js = typeof import('@nats-io/jetstream')
type Connection = Awaited<ReturnType<Nats['connect']>>

export async function queueSuite(options: BenchOptions): Promise<Row[]> {
  let nats: Nats
  let js: Js
  let nc: Connection
  try {
    ;[nats, js] = await Promise.all([import('@nats-io/transport-node'), import('@nats-io/jetstream')])
    nc = await nats.connect({ servers: SERVER, timeout: 3_000 })
  } catch (error) {
    return [{ work: 'queue: JetStream → DuckDB', filedge: `not run: NATS at ${SERVER} is unreachable (${(error as Error).message})`, target: 'informational' }]
  }
  const jsm = await js.jetstreamManager(nc)
  const client = js.jetstream(nc)
  const streams: string[] = []
  const newStream = async (name: string) => {
    await jsm.streams.add({ name, subjects: [`${name}.>`] })
    streams.push(name)
    return name
  }
  /** Publishes messages n… in flights of 500; returns each one's stream sequence and when it was sent. */
  const publish = async (stream: string, from: number, count: number) => {
    const sent: { seq: number; at: number }[] = []
    for (let i = 0; i < count; i += 500) {
      const flight = Array.from({ length: Math.min(500, count - i) }, (_, j) => {
        const at = performance.now()
        return client.publish(`${stream}.orders`, message(from + i + j)).then((ack) => ({ seq: ack.seq, at }))
      })
      sent.push(...(await Promise.all(flight)))
    }
    return sent
  }
  try {
    return [...(await throughput(options, nats, js, jsm, newStream, publish)), ...(await latency(newStream, publish))]
  } finally {
    for (const stream of streams) await jsm.streams.delete(stream).catch(() => undefined)
    await nc.close()
  }
}

async function throughput(
  options: BenchOptions,
  nats: Nats,
  js: Js,
  jsm: Awaited<ReturnType<Js['jetstreamManager']>>,
  newStream: (name: string) => Promise<string>,
  publish: (stream: string, from: number, count: number) => Promise<unknown>,
): Promise<Row[]> {
  const count = options.queueMessages
  const stream = await newStream(`FILEDGE_BENCH_${process.pid}`)
  await publish(stream, 1, count)
  const filedge = project({
    sourceDir: '.',
    include: '',
    source: `jetstream({ servers: '${SERVER}', stream: '${stream}', consumer: 'filedge', maxRecords: 10_000, maxWait: '1s' })`,
    imports: IMPORTS,
    destination: "duckdb({ path: 'warehouse.duckdb' })",
    columns: COLUMNS,
    state: ['warehouse.duckdb', 'warehouse.duckdb.wal'],
  })
  /** The plain consumer: a new durable one, every message acknowledged, until the stream is read. */
  const ackOnly = async () => {
    await jsm.consumers.delete(stream, 'ack_only').catch(() => undefined)
    const started = performance.now()
    const nc = await nats.connect({ servers: SERVER })
    try {
      const manager = await js.jetstreamManager(nc)
      await manager.consumers.add(stream, { durable_name: 'ack_only', ack_policy: js.AckPolicy.Explicit, deliver_policy: js.DeliverPolicy.All, max_ack_pending: 20_000 })
      const messages = await js.jetstream(nc).consumers.get(stream, 'ack_only').then((consumer) => consumer.consume({ max_messages: 1_000 }))
      let seen = 0
      for await (const m of messages) {
        m.ack()
        if (++seen === count) break
      }
      await nc.flush()
      const ms = performance.now() - started
      const left = (await manager.consumers.info(stream, 'ack_only')).num_pending
      if (left !== 0) throw new Error(`the ack-only consumer left ${left} messages`)
      return ms
    } finally {
      await nc.close()
    }
  }
  /** The queue source alone, in this process: consume, promote and acknowledge, load nothing (where the time goes). */
  const promoteOnly = async () => {
    await jsm.consumers.delete(stream, 'promote_only').catch(() => undefined)
    const root = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-queue-'))
    const source = jetstream({ servers: SERVER, stream, consumer: 'promote_only', maxRecords: 10_000, maxWait: '1s' })
    const none: Destination = { name: 'none', capabilities: { transactions: true, writeModes: ['append'] }, describe: () => 'nowhere', prepare: async () => {}, write: async () => ({ rows: 0 }) }
    const config = resolveConfig({ pipelines: [{ name: 'orders', source, destination: none, table: 'orders', columns: { id: 'string' } }] }, { cwd: root })
    const ledger = openSqliteLedger(path.join(root, '.filedge/ledger.db'))
    const quiet = { debug() {}, info() {}, warn() {}, error() {} }
    try {
      const started = performance.now()
      await source.connect!({ config, logger: quiet, defaultInclude: [], pipelines: ['orders'], ledger, worker: 'bench' })
      const report = await source.consumeNow({ signal: new AbortController().signal })
      if (report.records !== count) throw new Error(`the queue source promoted ${report.records} of ${count} messages: ${report.error?.message}`)
      return performance.now() - started
    } finally {
      await ledger.close()
      rmSync(root, { recursive: true, force: true })
    }
  }
  try {
    const runs = await alternate(options.reps, {
      promoteOnly,
      filedge: async () => {
        filedge.reset()
        await jsm.consumers.delete(stream, 'filedge').catch(() => undefined)
        const run = await filedge.run()
        if (run.summary.rows !== count) throw new Error(`filedge loaded ${run.summary.rows} rows from ${count} messages`)
        return run
      },
      ackOnly,
    })
    const wall = median(runs.filedge.map((run) => run.ms))
    const inRun = median(runs.filedge.map((run) => run.summary.durationMs))
    const limit = median(runs.ackOnly)
    const promoting = median(runs.promoteOnly)
    return [
      {
        work: `queue: ${format.format(count)} × 1 KB messages, JetStream → DuckDB (filedge run: consume, promote, ack, load)`,
        filedge: `${format.format(perSecond(count, wall))} msg/s (${seconds(wall)}; run itself ${seconds(inRun)}, ${format.format(perSecond(count, inRun))} msg/s)`,
        native: `${format.format(perSecond(count, limit))} msg/s: a consumer that only acks (${seconds(limit)})`,
        ratio: wall / limit,
        target: 'informational',
        detail: { filedgeMs: runs.filedge.map((run) => Math.round(run.ms)), inRunMs: runs.filedge.map((run) => run.summary.durationMs), ackOnlyMs: runs.ackOnly.map(Math.round), peakRssMb: Math.max(...runs.filedge.map((run) => Math.round(run.maxRssMb))) },
      },
      {
        work: `queue: the same messages consumed, promoted (gzip NDJSON, manifest, fsync, ledger cursor) and acked, nothing loaded`,
        filedge: `${format.format(perSecond(count, promoting))} msg/s (${seconds(promoting)})`,
        native: `${format.format(perSecond(count, limit))} msg/s: a consumer that only acks`,
        ratio: promoting / limit,
        target: 'informational',
        detail: { promoteOnlyMs: runs.promoteOnly.map(Math.round) },
      },
    ]
  } finally {
    filedge.remove()
  }
}

async function latency(newStream: (name: string) => Promise<string>, publish: (stream: string, from: number, count: number) => Promise<{ seq: number; at: number }[]>): Promise<Row[]> {
  const stream = await newStream(`FILEDGE_BENCH_W${process.pid}`)
  const filedge = project({
    sourceDir: '.',
    include: '',
    source: `jetstream({ servers: '${SERVER}', stream: '${stream}', consumer: 'filedge', maxRecords: 10_000, maxWait: '${LATENCY_MAX_WAIT}ms' })`,
    imports: IMPORTS,
    destination: "duckdb({ path: 'warehouse.duckdb' })",
    columns: COLUMNS,
    state: [],
  })
  const watch = watcher(filedge.dir, 'queue bench', 60_000)
  const folder = path.join(filedge.dir, '.filedge/queue/orders')
  /** Which file holds each sequence, from the manifests. */
  const files = () => {
    const bySeq = new Map<number, string>()
    for (const name of readdirSync(folder).filter((entry) => entry.endsWith('.manifest.json'))) {
      const manifest = JSON.parse(readFileSync(path.join(folder, name), 'utf8')) as { file: string; sequences: [number, number][] }
      for (const [from, to] of manifest.sequences) for (let seq = from; seq <= to; seq++) bySeq.set(seq, manifest.file)
    }
    return bySeq
  }
  try {
    await watch.until(() => watch.ready, 'the watcher to start')
    // Not measured: the first file also pays for the consumer's creation and the first DuckDB insert.
    const [warm] = await publish(stream, 0, 1)
    await watch.until(() => watch.committed.size === 1, 'the warm-up message to commit')
    const sent: { seq: number; at: number }[] = []
    const total = LATENCY_RATE * LATENCY_SECONDS
    const tick = 10
    const started = performance.now()
    for (let n = 1; n <= total; ) {
      const due = Math.min(total, Math.floor(((performance.now() - started) * LATENCY_RATE) / 1000))
      if (due >= n) {
        sent.push(...(await publish(stream, n, due - n + 1)))
        n = due + 1
      } else await new Promise((resolve) => setTimeout(resolve, tick))
    }
    const last = Math.max(...sent.map((message) => message.seq))
    await watch.until(() => {
      const file = files().get(last)
      return file !== undefined && watch.committed.has(file)
    }, 'every message to commit')
    const where = files()
    const latencies = sent.filter((message) => message.seq !== warm.seq).map((message) => watch.committed.get(where.get(message.seq)!)! - message.at)
    const batches = new Set(where.values()).size - 1
    return [
      {
        work: `queue: publish → committed row, filedge --watch, ${format.format(LATENCY_RATE)} msg/s of 1 KB for ${LATENCY_SECONDS} s, maxWait ${LATENCY_MAX_WAIT} ms (${batches} files)`,
        filedge: `median ${Math.round(median(latencies))} ms, p95 ${Math.round(p95(latencies))} ms`,
        target: 'informational',
        detail: { messages: latencies.length, batches, maxMs: Math.round(Math.max(...latencies)) },
      },
    ]
  } finally {
    await watch.stop()
    filedge.remove()
  }
}
