import path from 'node:path'
import { alternate, median } from './measure.js'
import { ORDERS_COLUMNS, project } from './project.js'
import { bigCsv, format, seconds, type BenchOptions, type Row } from './suites.js'

/**
 * The cost of stages: the `--rows` orders into SQLite with three trivial
 * stages (each hands every row on: a filter that keeps all, a map that
 * copies each row with a computed column, a reshape that drops it again)
 * against the same pipeline without stages.
 */
export async function stagesSuite(options: BenchOptions): Promise<Row[]> {
  const data = await bigCsv(options)
  const STAGES = `stages: [
      stage({ name: 'keep', run: (rows) => rows.filter((row) => row.order_id !== null) }),
      stage({ name: 'mark', columns: { ...${ORDERS_COLUMNS}, big: 'boolean' }, run: (rows) => rows.map((row) => ({ ...row, big: row.amount > 50000 })) }),
      stage({ name: 'unmark', columns: ${ORDERS_COLUMNS}, run: (rows) => rows.map(({ big, ...row }) => row) }),
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
    ]
  } finally {
    sides.plain.remove()
    sides.staged.remove()
  }
}
