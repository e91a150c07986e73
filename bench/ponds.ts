import { spawn } from 'node:child_process'
import { mkdirSync, renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { median } from './measure.js'
import { project, REPO_ROOT } from './project.js'
import { type BenchOptions, type Row } from './suites.js'

const BIN = path.join(REPO_ROOT, 'bin/filedge.js')
const FILES = 50
const SETTLE_MS = 500

/**
 * The moonshot: `filedge pond wave <outlet> --watch` on an outlet two ponds
 * downstream of a pipeline (orders → DuckDB; `batches` counts orders per
 * batch; `outlet` reads it). For each of 50 new files: from the moment its
 * last byte is written (a rename into the watched folder) to the moment the
 * outlet's table holds its rows (the wave prints the demand that rebuilt
 * it, with the outlet's row count: one row per batch), minus the settle
 * window the watcher waits before it reads a file.
 */
export async function pondsSuite(options: BenchOptions): Promise<Row[]> {
  const side = project({
    sourceDir: 'incoming',
    include: '*.csv',
    imports: "import { duckdb } from 'filedge/plugins/duckdb'\nimport { pond, sql } from 'filedge/plugins/pond'",
    destination: "duckdb({ path: 'warehouse.duckdb' })",
    columns: "{ batch: 'integer', amount: 'float' }",
    config: `watch: { settle: '${SETTLE_MS}ms' },
  plugins: [
    pond({ name: 'batches', version: '1.0.0', sources: { orders: '^1' }, ripples: { counts: sql\`SELECT batch, count(*) AS orders, sum(amount) AS amount FROM orders GROUP BY batch\` } }),
    pond({ name: 'outlet', version: '1.0.0', sources: { batches: '^1' }, ripples: { report: sql\`SELECT batch, orders, amount FROM batches.counts ORDER BY batch\` } }),
  ],`,
    state: ['warehouse.duckdb', 'warehouse.duckdb.wal', 'incoming', 'staging'],
  })
  const incoming = path.join(side.dir, 'incoming')
  const staging = path.join(side.dir, 'staging')
  mkdirSync(incoming, { recursive: true })
  mkdirSync(staging, { recursive: true })
  const rowsPerFile = Math.max(1, Math.min(options.rowsPerFile, 10_000))
  const land = (batch: number) => {
    const lines = Array.from({ length: rowsPerFile }, (_, i) => `${batch},${(batch * 7 + i) % 1000}.5`)
    const file = path.join(staging, `batch-${batch}.csv`)
    writeFileSync(file, `batch,amount\n${lines.join('\n')}\n`)
    renameSync(file, path.join(incoming, `batch-${batch}.csv`))
  }
  land(0)
  const child = spawn(process.execPath, [BIN, 'pond', 'wave', 'outlet', '--watch', '--json'], { cwd: side.dir, stdio: ['ignore', 'pipe', 'pipe'] })
  /** Each outlet rebuild, when it was printed, and how many batches the outlet then held. */
  const rebuilt: { at: number; batches: number }[] = []
  let stderr = ''
  let pending = ''
  const waiters: (() => void)[] = []
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  child.stdout.on('data', (chunk: Buffer) => {
    const at = performance.now()
    pending += chunk.toString()
    const lines = pending.split('\n')
    pending = lines.pop()!
    for (const line of lines) {
      const parsed = JSON.parse(line) as { ponds?: { pond: string; outcome: string; ripples?: { rows: number }[] }[] }
      const outlet = parsed.ponds?.find((pond) => pond.pond === 'outlet@1' && pond.outcome === 'succeeded')
      if (outlet !== undefined) rebuilt.push({ at, batches: outlet.ripples![0]!.rows })
    }
    for (const wake of waiters.splice(0)) wake()
  })
  const until = async (batches: number, deadline: number) => {
    for (;;) {
      const found = rebuilt.find((rebuild) => rebuild.batches >= batches)
      if (found !== undefined) return found.at
      if (performance.now() > deadline) throw new Error(`the outlet never held ${batches} batches (stderr: ${stderr.slice(0, 500)})`)
      await new Promise<void>((resolve) => {
        waiters.push(resolve)
        setTimeout(resolve, 250)
      })
    }
  }
  try {
    await until(1, performance.now() + 60_000)
    const latencies: number[] = []
    for (let batch = 1; batch <= FILES; batch++) {
      const written = performance.now()
      land(batch)
      latencies.push((await until(batch + 1, written + 60_000)) - written - SETTLE_MS)
    }
    const typical = median(latencies)
    return [
      {
        work: `${FILES} files (${rowsPerFile} rows each), one at a time, into a standing wave two ponds downstream: last write → the outlet's table holds the file, beyond the ${SETTLE_MS} ms settle window`,
        filedge: `${Math.round(typical)} ms median (p90 ${Math.round(latencies.sort((a, b) => a - b)[Math.floor(latencies.length * 0.9)]!)} ms)`,
        native: '—',
        ratio: Number((typical / 1000).toFixed(2)),
        target: '≤ 1 s beyond the settle window',
        met: typical <= 1000,
        detail: { latenciesMs: latencies.map(Math.round) },
      },
    ]
  } finally {
    child.kill('SIGINT')
    await new Promise((resolve) => child.once('exit', resolve))
    side.remove()
  }
}
