import path from 'node:path'
import { failThenRetry, timedProject } from './cache.js'
import { alternate, median } from './measure.js'
import { ORDERS_COLUMNS, project, type Project } from './project.js'
import { bigCsv, format, seconds, type BenchOptions, type Row } from './suites.js'

/**
 * The cost of stages: the `--rows` orders into SQLite with three trivial
 * stages (a filter that keeps every row, a column added in place, new rows
 * built without it, one for one) against the same pipeline without stages:
 * what filedge adds around a stage, more than what a stage's code costs.
 */
export async function stagesSuite(options: BenchOptions): Promise<Row[]> {
  const data = await bigCsv(options)
  const STAGES = `stages: [
      stage({ name: 'keep', run: (rows) => rows.filter((row) => row.order_id !== null) }),
      stage({ name: 'tag', columns: { ...${ORDERS_COLUMNS}, big: 'boolean' }, run: (rows) => { for (const row of rows) row.big = row.amount > 50000; return rows } }),
      stage({ name: 'untag', columns: ${ORDERS_COLUMNS}, run: (rows) => rows.map((row) => ({ order_id: row.order_id, customer_id: row.customer_id, amount: row.amount, order_date: row.order_date, status: row.status, note: row.note })) }),
    ],`
  const make = (stages: boolean) =>
    project({
      sourceDir: path.dirname(data.file),
      include: path.basename(data.file),
      imports: "import { stage } from 'filedge'\nimport { sqlite } from 'filedge/plugins/sqlite'",
      destination: "sqlite({ path: 'warehouse.db' })",
      extra: stages ? STAGES : '',
      state: ['warehouse.db', 'warehouse.db-wal', 'warehouse.db-shm'],
    })
  const sides = { plain: make(false), staged: make(true) }
  const once = (side: ReturnType<typeof make>) => async () => {
    side.reset()
    const result = await side.run()
    if (result.summary.committed !== 1 || result.summary.rows !== data.rows) throw new Error(`expected 1 file and ${data.rows} rows, got ${JSON.stringify(result.summary)}`)
    return result.ms
  }
  const retries = await cachedChain(options, data, STAGES)
  try {
    const results = await alternate(options.reps, { plain: once(sides.plain), staged: once(sides.staged) })
    const plain = median(results.plain)
    const staged = median(results.staged)
    return [
      {
        work: `${format.format(data.rows)} rows → SQLite through three trivial stages`,
        filedge: seconds(staged),
        native: `${seconds(plain)} without stages`,
        ratio: Number((staged / plain).toFixed(2)),
        target: '≤ 1.3×',
        met: staged / plain <= 1.3,
        detail: { plainMs: results.plain.map(Math.round), stagedMs: results.staged.map(Math.round) },
      },
      ...retries,
    ]
  } finally {
    sides.plain.remove()
    sides.staged.remove()
  }
}

/**
 * A retry of the same file after its destination failed once it had read
 * every row, with the last stage declared `cache: true` and the cache plugin
 * on (its output is read back: no parse, no stage) against no cache (the file
 * is parsed and every stage runs again): the time the destination waits for
 * rows on the retry.
 */
async function cachedChain(options: BenchOptions, data: { file: string; rows: number }, stages: string): Promise<Row[]> {
  const cachedStages = stages.replace("stage({ name: 'untag',", "stage({ name: 'untag', cache: true,")
  const sides = { cold: timedProject(data.file, false, cachedStages), cached: timedProject(data.file, true, cachedStages) }
  const attempt = (side: Project) => () => failThenRetry(side)
  try {
    const results = await alternate(options.reps, { cold: attempt(sides.cold), cached: attempt(sides.cached) })
    const of = (side: 'cold' | 'cached', key: 'retryWaitMs' | 'retryMs') => median(results[side].map((result) => result[key]))
    const cold = of('cold', 'retryWaitMs')
    const cached = of('cached', 'retryWaitMs')
    const all = (side: 'cold' | 'cached', key: 'retryWaitMs' | 'retryMs') => results[side].map((result) => Math.round(result[key]))
    return [
      {
        work: `retry of the ${format.format(data.rows)}-row file through three stages, last one cached: time waiting for rows`,
        filedge: `${seconds(cached)} (no parse, no stage; retry ${seconds(of('cached', 'retryMs'))})`,
        native: `${seconds(cold)} parsed and run again (retry ${seconds(of('cold', 'retryMs'))})`,
        ratio: Number((cached / cold).toFixed(2)),
        target: '≤ 10% of the cold run',
        met: cached / cold <= 0.1,
        // The whole retry too (a new process: start, ledger, the file's hash, the load, the SQLite insert and commit).
        detail: { coldMs: all('cold', 'retryWaitMs'), cachedMs: all('cached', 'retryWaitMs'), coldRetryMs: all('cold', 'retryMs'), cachedRetryMs: all('cached', 'retryMs') },
      },
    ]
  } finally {
    sides.cold.remove()
    sides.cached.remove()
  }
}
