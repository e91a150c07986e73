import type { ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { gunzipSync } from 'node:zlib'
import { afterAll, afterEach, expect, it } from 'vitest'
import { describeBroker, ensureRunning, jetstreamQueue, orders, rabbitQueue, restartBroker, type BrokerName, type TestMessage, type TestQueue } from './brokers.js'
import { readDuckdb } from './duckdb.js'
import { random } from './invariants.js'
import { exited, REPO_ROOT, waitFor, workspace, type CliResult, type Workspace } from './workspace.js'

/**
 * The queue source through the real CLI against a real broker, the same
 * cases for each broker (test/queue-jetstream.test.ts, test/queue-rabbitmq.test.ts):
 * what a user sees afterwards is checked — the rows (each message exactly
 * once), the promoted files and their manifests, the dead-letter files, what
 * the broker still holds, the messages — after runs, watchers, SIGKILLs at
 * random moments and at the moment between promotion and acknowledgement,
 * SIGTERM, and a broker restart.
 */

const FOLDER = '.filedge/queue/orders'
const CRASH = path.join(REPO_ROOT, 'test/helpers/queue-crash.mjs')
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

interface Project {
  readonly ws: Workspace
  readonly q: TestQueue
  cli(args?: string[], env?: NodeJS.ProcessEnv): Promise<CliResult>
  spawn(args?: string[], env?: NodeJS.ProcessEnv): ChildProcess & { output(): string }
  rows(): { id: string; n: number; _source_file_hash: string }[]
  rowCount(): number
  dataFiles(): string[]
  manifests(): Record<string, unknown>[]
  deadLetters(): Record<string, unknown>[]
  /** Records in the promoted data files. */
  promoted(): { id: string }[]
  /** Waits until the dead process's lease on the source has expired by the ledger's clock. */
  leaseFree(): Promise<void>
}

export function queueSuite(broker: BrokerName): void {
  const projects: Project[] = []
  const children: ChildProcess[] = []
  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited(child)
    }
    for (const p of projects.splice(0)) {
      await p.q.remove()
      p.ws.remove()
    }
  })
  // Whatever a test did to the broker, it is left running.
  afterAll(async () => ensureRunning(broker), 120_000)

  const source = broker === 'jetstream' ? 'jetstream' : 'rabbitmq'

  async function project(options: { batch?: string; ackWait?: string; destination?: 'sqlite' | 'duckdb' } = {}): Promise<Project> {
    const q = broker === 'jetstream' ? await jetstreamQueue({ ackWait: options.ackWait }) : await rabbitQueue()
    const batch = options.batch ?? "maxRecords: 500, maxWait: '200ms', maxMessageBytes: '4KiB', reconnect: '60s'"
    const ws = workspace({
      'filedge.config.ts': `import { defineConfig, env } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
import { ${source} } from 'filedge/plugins/queue'
import { queueCrash } from ${JSON.stringify(CRASH)}
export default defineConfig({
  lease: { ttl: '1s', heartbeat: '250ms' },
  watch: { poll: '200ms' },
  plugins: [queueCrash()],
  pipelines: [{
    name: 'orders',
    source: ${source}({ ${q.sourceOptions}, ${batch} }),
    destination: sqlite({ path: 'warehouse.db' }),
    table: 'orders',
    columns: { id: { type: 'string', required: true }, n: 'integer', note: 'string' },
  }],
})
`,
    })
    const dir = ws.file(FOLDER)
    const p: Project = {
      ws,
      q,
      cli: (args = [], env = {}) => ws.cli(args, { env: { ...q.env, ...env } }),
      spawn(args = [], env = {}) {
        const child = ws.spawn(args, { env: { ...q.env, ...env } })
        children.push(child)
        let output = ''
        child.stdout!.on('data', (chunk) => (output += chunk))
        child.stderr!.on('data', (chunk) => (output += chunk))
        return Object.assign(child, { output: () => output })
      },
      rows: () => (ws.exists('warehouse.db') ? ws.query('warehouse.db', 'SELECT id, n, _source_file_hash FROM orders ORDER BY n') : []),
      rowCount() {
        try {
          return (ws.query<{ count: number }>('warehouse.db', 'SELECT count(*) AS count FROM orders')[0]?.count ?? 0) as number
        } catch {
          return 0
        }
      },
      dataFiles: () => (existsSync(dir) ? readdirSync(dir).filter((name) => /\.ndjson(\.gz)?$/.test(name)).sort() : []),
      manifests: () => (existsSync(dir) ? readdirSync(dir).filter((name) => name.endsWith('.manifest.json')).sort().map((name) => JSON.parse(readFileSync(path.join(dir, name), 'utf8'))) : []),
      deadLetters: () => {
        const dead = path.join(dir, 'dead-letter')
        if (!existsSync(dead)) return []
        return readdirSync(dead)
          .sort()
          .flatMap((name) => readFileSync(path.join(dead, name), 'utf8').split('\n').filter((line) => line !== ''))
          .map((line) => JSON.parse(line))
      },
      promoted: () =>
        p.dataFiles().flatMap((name) =>
          gunzipSync(readFileSync(path.join(dir, name)))
            .toString('utf8')
            .split('\n')
            .filter((line) => line !== '')
            .map((line) => JSON.parse(line) as { id: string }),
        ),
      async leaseFree() {
        if (!ws.exists('.filedge/ledger.db')) return
        const [lease] = ws.query<{ expires: number }>('.filedge/ledger.db', "SELECT expires_at AS expires FROM leases WHERE name = 'queue:orders'")
        if (lease !== undefined) await waitFor(() => Date.now() > lease.expires + 50, 10_000, 'the dead process to lose its lease')
      },
    }
    projects.push(p)
    return p
  }

  const ids = (messages: readonly TestMessage[]) => messages.map((message) => (JSON.parse(message.body as string) as { id: string }).id)
  const identity = broker === 'jetstream' ? 'sequence' : 'id'

  describeBroker(broker, `queue source: ${broker}`, () => {
    it('a run consumes what is there into files and rows, each message once; poison goes to the dead-letter file; all acknowledged; a rerun finds nothing; lineage names the messages', async () => {
      // Every message is published before the run: the batches close by maxRecords, unless a busy machine stalls a pull past maxWait.
      const p = await project({ batch: "maxRecords: 500, maxWait: '10s', maxMessageBytes: '4KiB', reconnect: '60s'", ackWait: '30s' })
      const messages: TestMessage[] = orders(1000)
      // Poison: not JSON (300), over maxMessageBytes (700), not UTF-8 (800).
      messages[299] = { body: 'not json {', messageId: 'm-300' }
      messages[699] = { body: JSON.stringify({ id: 'o-700', n: 700, note: 'y'.repeat(5000) }), messageId: 'm-700' }
      messages[799] = { body: Buffer.from([0xff, 0xfe, 0x41]), messageId: 'm-800' }
      await p.q.publish(messages)
      const good = ids(messages.filter((_, i) => ![299, 699, 799].includes(i)))

      const run = await p.cli(['--reporter', 'simple'])
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toMatch(/committed 2 · failed 0/)
      expect(p.rows().map((row) => row.id)).toEqual(good)
      expect(run.stderr).toMatch(new RegExp(`: 1 message dead-lettered into ${FOLDER}/dead-letter/00000001-[0-9a-f]{12}\\.ndjson \\(not JSON: `))
      expect(run.stderr).toMatch(new RegExp(`: 2 messages dead-lettered into ${FOLDER}/dead-letter/00000002-[0-9a-f]{12}\\.ndjson \\(too large: `))

      // Dead letters: the message's identity, why, and its bytes (base64 when not UTF-8); written before they were acknowledged.
      const dead = p.deadLetters()
      const key = (n: number) => (broker === 'jetstream' ? { sequence: n } : { id: `m-${n}` })
      expect(dead).toEqual([
        expect.objectContaining({ ...key(300), reason: expect.stringMatching(/^not JSON: /), payload: 'not json {', bytes: 10 }),
        expect.objectContaining({ ...key(700), reason: expect.stringMatching(/^too large: \d+ bytes \(maxMessageBytes is 4096\)$/) }),
        expect.objectContaining({ ...key(800), reason: 'not UTF-8 text', payloadBase64: '//5B', bytes: 3 }),
      ])

      // Each data file is what its manifest says, and its rows carry its hash.
      const manifests = p.manifests()
      expect(manifests.map((m) => [m.batch, m.records, m.closedBy])).toEqual([
        [1, 499, 'maxRecords'],
        [2, 498, 'maxRecords'],
      ])
      for (const manifest of manifests) {
        const bytes = readFileSync(p.ws.file(`${FOLDER}/${manifest.file}`))
        expect(manifest.sha256).toBe(sha256(bytes))
        expect(p.rows().filter((row) => row._source_file_hash === manifest.sha256)).toHaveLength(manifest.records as number)
      }
      if (identity === 'sequence') {
        expect(manifests[0]).toMatchObject({ broker: 'jetstream', first: 1, last: 500, sequences: [[1, 299], [301, 500]], deadLetters: { count: 1, sequences: [[300, 300]] } })
        expect(manifests[1]).toMatchObject({ first: 501, last: 1000, sequences: [[501, 699], [701, 799], [801, 1000]] })
      } else {
        expect((manifests[0].ids as string[]).slice(0, 3)).toEqual(['m-1', 'm-2', 'm-3'])
        expect(manifests[0]).toMatchObject({ broker: 'rabbitmq', origin: { url: 'amqp://guest:***@127.0.0.1:5672', queue: p.q.name }, deadLetters: { count: 1, ids: ['m-300'] } })
      }
      expect(await p.q.backlog()).toEqual({ ready: 0, unacknowledged: 0 })

      const rerun = await p.cli(['--reporter', 'simple'])
      expect(rerun.code, rerun.stderr).toBe(0)
      expect(rerun.stdout).toMatch(/committed 0 · failed 0/)
      expect(p.manifests()).toHaveLength(2)

      // A row → its file (the hash) → the messages behind it.
      const lineage = await p.cli(['lineage'])
      expect(lineage.code).toBe(0)
      if (identity === 'sequence') expect(lineage.stdout).toContain(`↳ jetstream stream ${p.q.name} consumer filedge · sequences 1–299, 301–500 · batch 1, 499 records · 1 dead-lettered (dead-letter/${manifests[0].name}.ndjson)`)
      else expect(lineage.stdout).toContain(`↳ rabbitmq amqp://guest:***@127.0.0.1:5672 queue ${p.q.name} · 499 message ids (first m-1, last m-500) · batch 1, 499 records · 1 dead-lettered`)
      const everything = [run.stdout, run.stderr, lineage.stdout, ...manifests.map((m) => JSON.stringify(m)), JSON.stringify(p.ws.query('.filedge/ledger.db', 'SELECT * FROM cursor_events'))].join('\n')
      expect(everything).not.toContain('guest:guest')
    })

    it('killed after a batch is promoted and before it is acknowledged: the broker delivers it again, and the rerun acknowledges it without a second file', async () => {
      const p = await project({ batch: "maxRecords: 50, maxWait: '200ms'" })
      const messages = orders(120)
      await p.q.publish(messages)
      const first = await p.cli(['--reporter', 'silent'], { FILEDGE_QUEUE_CRASH: '1' })
      expect(first.code).toBeNull()
      expect(p.ws.exists('crash-armed')).toBe(true)
      expect(p.dataFiles()).toHaveLength(1)
      expect(p.rowCount()).toBe(0)

      await p.leaseFree()
      const rerun = await p.cli(['--reporter', 'simple'])
      expect(rerun.code, rerun.stderr).toBe(0)
      // 70 records in batches of maxRecords (50): two, or more when a stall on a busy machine outlasted maxWait.
      const batches = Number(/: (\d+) batches, 70 records, 50 already promoted \(acknowledged again\)/.exec(rerun.stdout)?.[1])
      expect(batches, rerun.stdout).toBeGreaterThanOrEqual(2)
      expect(p.rows().map((row) => row.id)).toEqual(ids(messages))
      expect(p.dataFiles()).toHaveLength(1 + batches)
      expect(p.promoted()).toHaveLength(120)
      expect(await p.q.backlog()).toEqual({ ready: 0, unacknowledged: 0 })
    })

    it('10,000 messages published while filedge --watch is SIGKILLed at random moments land exactly once', { timeout: 180_000 }, async () => {
      const p = await project()
      const seed = Number(process.env.TEST_SEED ?? Math.floor(Math.random() * 2 ** 31))
      const rng = random(seed)
      const total = 10_000
      const messages = orders(total)
      const kills = { promoted: 0, random: 0 }
      const rounds = 10
      for (let round = 0; round < rounds; round++) {
        // Half the rounds die between a promotion and its acks (the nth promotion of the process), half at a random instant.
        const atPromotion = round % 2 === 0
        const child = p.spawn(['--watch', '--reporter', 'silent'], atPromotion ? { FILEDGE_QUEUE_CRASH: String(1 + Math.floor(rng() * 2)) } : {})
        // A thousand messages published while this process starts, consumes and dies: every round has batches to promote.
        const share = total / rounds
        const publishing = p.q.publish(messages.slice(round * share, (round + 1) * share))
        const timer = setTimeout(() => child.kill('SIGKILL'), atPromotion ? 8_000 : 800 + rng() * 2_500)
        const exit = await exited(child)
        clearTimeout(timer)
        await publishing
        expect(exit.signal, `round ${round} (TEST_SEED=${seed}): ${child.output()}`).toBe('SIGKILL')
        if (p.ws.exists('crash-armed')) {
          kills.promoted++
          rmSync(p.ws.file('crash-armed'))
        } else kills.random++
        // No file is ever promoted twice, whatever the kills: every message is in at most one promoted file.
        const promotedIds = p.promoted().map((record) => record.id)
        expect(new Set(promotedIds).size, `round ${round} (TEST_SEED=${seed})`).toBe(promotedIds.length)
        await p.leaseFree()
      }
      const beforeDrain = { files: p.dataFiles().length, rows: p.rowCount() }
      // Drain what is left; a run waits for messages a killed consumer held to come back.
      const drain = await p.cli(['--reporter', 'simple'])
      expect(drain.code, drain.stderr).toBe(0)
      const rows = p.rows()
      expect(rows).toHaveLength(total)
      expect(new Set(rows.map((row) => row.id)).size).toBe(total)
      expect(rows.map((row) => row.id)).toEqual(ids(messages))
      expect(p.promoted()).toHaveLength(total)
      expect(p.deadLetters()).toEqual([])
      expect(await p.q.backlog()).toEqual({ ready: 0, unacknowledged: 0 })
      console.log(`${broker} kill loop (TEST_SEED=${seed}): ${kills.promoted} kills between a promotion and its acks, ${kills.random} at random instants; before the last run ${beforeDrain.files} files and ${beforeDrain.rows} rows, after it ${p.dataFiles().length} files`)
      expect(kills.promoted, `kills at a promotion (TEST_SEED=${seed})`).toBeGreaterThanOrEqual(3)
      // The watchers did work under the kills, not only the last run: each kill at a promotion left a promoted file.
      expect(beforeDrain.files).toBeGreaterThanOrEqual(kills.promoted)
      expect(beforeDrain.rows).toBeGreaterThan(0)
      const files = p.ws.query<{ state: string; count: number }>('.filedge/ledger.db', 'SELECT state, count(*) AS count FROM files GROUP BY state')
      expect(files).toEqual([{ state: 'COMMITTED', count: p.dataFiles().length }])
    })

    it('a broker restart mid-stream loses nothing: the watcher reconnects and every message lands once', { timeout: 180_000 }, async () => {
      const p = await project()
      const child = p.spawn(['--watch', '--reporter', 'simple'])
      await waitFor(() => child.output().includes('Ctrl-C to stop'), 20_000, 'the watcher to start')
      const before = orders(3000)
      await p.q.publish(before)
      // Mid-stream: some of it committed, the rest still at the broker or in an open batch.
      await waitFor(() => p.rowCount() > 0, 20_000, 'the first rows')
      try {
        await restartBroker(broker)
      } finally {
        await ensureRunning(broker)
      }
      const after = orders(3000, 3001)
      await p.q.publish(after)
      await waitFor(() => p.rowCount() >= 6000, 90_000, 'every message after the restart').catch((error: Error) => {
        throw new Error(`${error.message} (${p.rowCount()} rows):\n${child.output()}`)
      })
      child.kill('SIGTERM')
      expect((await exited(child)).code).toBe(0)
      const rows = p.rows()
      expect(rows.map((row) => row.id)).toEqual(ids([...before, ...after]))
      expect(await p.q.backlog()).toEqual({ ready: 0, unacknowledged: 0 })
    })

    it('one process consumes a source at a time: a run while a watcher holds it consumes nothing and lists what the watcher promoted', async () => {
      const p = await project()
      const child = p.spawn(['--watch', '--reporter', 'simple'])
      await waitFor(() => child.output().includes('Ctrl-C to stop'), 20_000, 'the watcher to start')
      await p.q.publish(orders(600))
      await waitFor(() => p.rowCount() === 600, 20_000, 'the watcher to load what was published')
      const run = await p.cli(['--reporter', 'simple'])
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toContain(': another process is consuming it; listing what is promoted')
      expect(run.stdout).toMatch(/committed 0 · failed 0 · skipped 2 /)
      // The watcher still consumes: what comes next is its to load.
      await p.q.publish(orders(10, 601))
      await waitFor(() => p.rowCount() === 610, 20_000, 'the watcher to load the next messages')
      child.kill('SIGTERM')
      expect((await exited(child)).code).toBe(0)
      expect(new Set(p.rows().map((row) => row.id)).size).toBe(610)
    })

    it(`docs/queues.md's ${broker} example, as written, loads the queue`, async () => {
      const docs = readFileSync(path.join(REPO_ROOT, 'docs/queues.md'), 'utf8')
      const title = broker === 'jetstream' ? 'NATS JetStream' : 'RabbitMQ'
      const example = new RegExp(`\`\`\`ts\n// filedge\\.config\\.ts \\(${title}\\)\n([\\s\\S]*?)\`\`\``).exec(docs)?.[1]
      expect(example).toBeDefined()
      const q = broker === 'jetstream' ? await jetstreamQueue() : await rabbitQueue()
      const config =
        broker === 'jetstream'
          ? example!.replace("stream: 'ORDERS'", `stream: '${q.name}'`).replace("subject: 'orders.created'", `subject: '${q.name}.orders'`)
          : example!.replace("queue: 'payments'", `queue: '${q.name}'`)
      expect(config).not.toBe(example)
      const ws = workspace({ 'filedge.config.ts': config })
      projects.push({ ws, q } as Project)
      const records = Array.from({ length: 25 }, (_, i) =>
        broker === 'jetstream'
          ? { id: `o-${i + 1}`, amount: `${i + 1}.50`, customer: 'Ada', created_at: `2026-05-02T08:00:${String(i).padStart(2, '0')}Z` }
          : { payment_id: `p-${i + 1}`, amount: `${i + 1}.50`, currency: 'EUR' },
      )
      await q.publish(records.map((record, i) => ({ body: JSON.stringify(record), messageId: `p-${i + 1}` })))
      const result = await ws.cli(['--reporter', 'simple'], { env: { RABBITMQ_URL: q.env.TEST_RABBITMQ_URL } })
      expect(result.code, result.stderr).toBe(0)
      const rows =
        broker === 'jetstream'
          ? await readDuckdb(ws.file('.filedge/warehouse.duckdb'), 'SELECT id, CAST(amount AS VARCHAR) AS amount FROM orders ORDER BY created_at')
          : ws.query<Record<string, unknown>>('warehouse.db', 'SELECT payment_id, amount FROM payments ORDER BY rowid')
      expect(rows).toHaveLength(25)
      expect(rows[1]).toEqual(broker === 'jetstream' ? { id: 'o-2', amount: '2.50' } : { payment_id: 'p-2', amount: '2.50' })
    })

    if (broker === 'jetstream') {
      it('a stream deleted and created again numbers its messages from 1: they are new messages, loaded, not taken for the promoted ones', async () => {
        const p = await project()
        await p.q.publish(orders(300))
        expect((await p.cli(['--reporter', 'simple'])).code).toBe(0)
        await p.q.recreate!()
        // The same sequences 1…200, other messages; the consumer filedge created went with the stream, and is created again.
        await p.q.publish(orders(200, 301))
        const run = await p.cli(['--reporter', 'simple'])
        expect(run.code, run.stderr).toBe(0)
        expect(run.stdout).toContain(': the stream was created again since batch 1 (created ')
        expect(p.rows().map((row) => row.id)).toEqual(ids(orders(500)))
        const [first, second] = p.manifests()
        expect(first.epoch).not.toBe(second.epoch)
        expect(second).toMatchObject({ first: 1, last: 200, records: 200 })
      })
    }

    it('healthcheck: the source answers while its stream or queue is there, consuming nothing, and is down, saying why, when it is not', async () => {
      const p = await project()
      await p.q.publish(orders(3))
      const up = await p.cli(['healthcheck'])
      expect(up.code, up.stdout + up.stderr).toBe(0)
      expect(up.stdout).toMatch(new RegExp(`source\\s+orders\\s+${source} .*${p.q.name}.*\\s+ok\\s`))
      expect(await p.q.backlog()).toMatchObject({ ready: 3 })
      await p.q.remove()
      const down = await p.cli(['healthcheck'])
      expect(down.code).toBe(1)
      expect(down.stdout).toMatch(new RegExp(`down .*: the ${broker === 'jetstream' ? 'stream' : 'queue'} ${p.q.name} does not exist or cannot be read`))
    })

    if (broker === 'rabbitmq') {
      it('credentials the broker refuses: the run fails after reconnect, saying why, and the password is nowhere', async () => {
        const p = await project({ batch: "maxRecords: 10, reconnect: '1s'" })
        const password = 'wrong-s3cret-7d1f'
        const run = await p.cli(['--reporter', 'simple'], { TEST_RABBITMQ_URL: `amqp://guest:${password}@127.0.0.1:5672` })
        expect(run.code).toBe(1)
        expect(run.stderr).toMatch(/pipeline "orders": cannot list rabbitmq amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672 queue \S+: cannot connect \(.*ACCESS.REFUSED.*\) \(tried for 1 s: reconnect\)/)
        expect(run.stdout + run.stderr).not.toContain(password)
      })
    }

    it('SIGTERM with a batch open: the batch is abandoned, nothing of it acknowledged or written; the next run loads it', async () => {
      const p = await project({ batch: "maxRecords: 1000, maxWait: '20s'", ackWait: '60s' })
      const child = p.spawn(['--watch', '--reporter', 'simple'])
      await waitFor(() => child.output().includes('Ctrl-C to stop'), 20_000, 'the watcher to start')
      await p.q.publish(orders(5))
      // Delivered, held in the open batch: nothing is ready at the broker any more.
      await expect.poll(async () => (await p.q.backlog()).ready, { timeout: 10_000 }).toBe(0)
      child.kill('SIGTERM')
      expect((await exited(child)).code).toBe(0)
      expect(p.dataFiles()).toEqual([])
      // Handed back at once (not after the 60 s ack wait): the next run loads them.
      const run = await p.cli(['--reporter', 'simple'])
      expect(run.code, run.stderr).toBe(0)
      expect(p.rows().map((row) => row.id)).toEqual(ids(orders(5)))
      expect(await p.q.backlog()).toEqual({ ready: 0, unacknowledged: 0 })
    })
  })
}
