import { createHash } from 'node:crypto'
import { cpSync, existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { MAX_MESSAGE_CHARS } from '../core/errors.js'
import { readSidecar } from '../core/quarantine/sidecar.js'
import { historyProblems, readLedger, type LedgerFileRow, type LedgerSnapshot } from './helpers/invariants.js'
import { REPO_ROOT, workspace, type Workspace } from './helpers/workspace.js'

/**
 * The bad-input corpus: one folder per case under test/fixtures/bad-input/,
 * all run by this one driver (the folder format is described in that
 * directory's README.md). A new case is a new folder, not new code.
 *
 * For every case the driver runs the real CLI on the case's files and checks:
 * each file listed in expected.json ended as expected (COMMITTED with exactly
 * the documented values, FAILED with the code, line, column and reason, skipped
 * before it was claimed, or never picked up at all); no file the case does not
 * list appears anywhere; a FAILED file has no row in the destination; the run's
 * exit code; its warnings; the events table explains every file; and at least
 * one file committed rows: bad input never stops the good input next to it.
 */

const CORPUS = path.join(REPO_ROOT, 'test/fixtures/bad-input')

const DEFAULT_PIPELINE = { columns: { id: { type: 'integer', required: true }, name: 'string' } }

interface CaseInput {
  /** Merged over DEFAULT_PIPELINE (and the fixed name, source, destination). */
  readonly pipeline?: Record<string, unknown>
  /** Extra environment for the CLI. */
  readonly env?: Record<string, string>
}

/** What a quarantine set aside from a committed file: how many records, and (in file order) each one's place, problems and text. */
interface QuarantineExpectation {
  readonly rows: number
  readonly entries?: readonly { readonly line: number; readonly row: number; readonly columns?: readonly string[]; readonly reason?: string; readonly record?: string }[]
}

type Expectation =
  | { readonly state: 'COMMITTED'; readonly rows?: readonly Record<string, unknown>[]; readonly rowCount?: number; readonly quarantine?: QuarantineExpectation }
  | { readonly state: 'FAILED'; readonly code: string; readonly line?: number; readonly column?: string; readonly reason: string }
  /** Hashed, then left alone before any claim (the ledger never hears of it). */
  | { readonly state: 'skipped'; readonly reason: string }
  /** Never picked up: not a candidate at all. */
  | { readonly state: 'ignored' }

interface RunExpectation {
  readonly exitCode: number
  readonly files: Readonly<Record<string, Expectation>>
  /** Substrings, one per warning the run must print, in any order. */
  readonly warnings?: readonly string[]
}

interface Expected extends RunExpectation {
  readonly description: string
  /** Tables the destination must hold afterwards, exactly (nothing else created, nothing dropped). */
  readonly tables?: readonly string[]
  /** A second run of the same project, and what it must leave. */
  readonly rerun?: RunExpectation
}

interface JsonEvent {
  readonly event: string
  readonly path?: string
  readonly hash?: string
  readonly reason?: string
  readonly level?: string
  readonly message?: string
  readonly error?: { readonly code: string; readonly message: string; readonly line?: number; readonly column?: string }
}

const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T

function configFor(caseDir: string, input: CaseInput): string {
  const pipeline = { ...DEFAULT_PIPELINE, ...input.pipeline }
  const plugin = existsSync(path.join(caseDir, 'plugin.mjs'))
  return `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
${plugin ? `import plugin from ${JSON.stringify(pathToFileURL(path.join(caseDir, 'plugin.mjs')).href)}` : ''}
export default defineConfig({
  plugins: [${plugin ? 'plugin()' : ''}],
  pipelines: [{
    name: 'corpus',
    source: { dir: 'incoming' },
    destination: sqlite({ path: 'warehouse.db' }),
    table: 'rows',
    ...${JSON.stringify(pipeline)},
  }],
})
`
}

/** Values as the corpus writes them: integers past 2^53 as { "$bigint": "…" }. */
function fromSqlite(value: unknown): unknown {
  if (typeof value !== 'bigint') return value
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : { $bigint: value.toString() }
}

/** Expected values may also be { "$length": n } (a string of that length) for values too big to write out. */
function matches(actual: unknown, expected: unknown): boolean {
  if (expected !== null && typeof expected === 'object' && '$length' in expected) {
    return typeof actual === 'string' && actual.length === (expected as { $length: number }).$length
  }
  return JSON.stringify(actual) === JSON.stringify(expected)
}

function tableRows(w: Workspace, table: string, hash: string): Record<string, unknown>[] {
  const db = new Database(w.file('warehouse.db'), { readonly: true, fileMustExist: true })
  try {
    db.defaultSafeIntegers(true)
    const quoted = `"${table.replace(/"/g, '""')}"`
    return (db.prepare(`SELECT * FROM ${quoted} WHERE _source_file_hash = ? ORDER BY _source_row_number`).all(hash) as Record<string, unknown>[]).map((row) =>
      Object.fromEntries(Object.entries(row).map(([key, value]) => [key, fromSqlite(value)])),
    )
  } finally {
    db.close()
  }
}

function destinationTables(w: Workspace): string[] {
  if (!w.exists('warehouse.db')) return []
  const db = new Database(w.file('warehouse.db'), { readonly: true })
  try {
    return (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((row) => row.name)
  } finally {
    db.close()
  }
}

/** The ledger record a path names (if the path held different bytes over time, the ones on disk now). */
function recordAt(w: Workspace, ledger: LedgerSnapshot, relative: string): LedgerFileRow | undefined {
  const hashes = ledger.paths.filter((entry) => entry.path === relative).map((entry) => entry.hash)
  const records = ledger.files.filter((file) => hashes.includes(file.hash))
  if (records.length <= 1) return records[0]
  const current = existsSync(w.file(relative)) ? createHash('sha256').update(readFileSync(w.file(relative))).digest('hex') : undefined
  return records.find((record) => record.hash === current) ?? records.at(-1)
}

/**
 * The ledger's quarantine record of a committed file and its sidecar match
 * the case; a case that expects none has neither (bad input is never set
 * aside silently). Returns the record numbers set aside.
 */
function checkQuarantine(w: Workspace, hash: string, want: QuarantineExpectation | undefined, where: string): number[] {
  const db = new Database(w.file('.filedge/ledger.db'), { readonly: true })
  let recorded: { quarantined: number | null; sidecar: string | null }
  try {
    recorded = db.prepare('SELECT quarantined, sidecar FROM files WHERE hash = ?').get(hash) as typeof recorded
  } finally {
    db.close()
  }
  const sidecar = `.filedge/quarantine/corpus/${hash}.ndjson`
  if (want === undefined) {
    expect(recorded, `${where}: nothing quarantined`).toEqual({ quarantined: null, sidecar: null })
    expect(existsSync(w.file(sidecar)), `${where}: no sidecar`).toBe(false)
    return []
  }
  expect(recorded, `${where}: quarantine in the ledger`).toEqual({ quarantined: want.rows, sidecar })
  const { header, entries } = readSidecar(w.file(sidecar))
  expect(header.hash, `${where}: sidecar header`).toBe(hash)
  expect(entries.length, `${where}: records in the sidecar`).toBe(want.rows)
  want.entries?.forEach((expected, index) => {
    const entry = entries[index]
    expect({ line: entry.line, row: entry.row }, `${where}: quarantined record ${index + 1}`).toEqual({ line: expected.line, row: expected.row })
    if (expected.columns !== undefined) expect(entry.errors.map((error) => error.column), `${where}: columns of quarantined record ${index + 1}`).toEqual(expected.columns)
    if (expected.reason !== undefined) expect(entry.errors.map((error) => error.reason).join('; '), `${where}: reason of quarantined record ${index + 1}`).toContain(expected.reason)
    if (expected.record !== undefined) expect(entry.record, `${where}: text of quarantined record ${index + 1}`).toBe(expected.record)
  })
  return entries.map((entry) => entry.row)
}

async function runAndCheck(w: Workspace, input: CaseInput, expected: RunExpectation, table: string, label: string, first: boolean): Promise<void> {
  const result = await w.cli(['--json'], { env: input.env })
  const events = result.stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as JsonEvent)
  expect(result.stderr, `${label}: stderr`).toBe('')
  expect(result.code, `${label}: exit code (events: ${result.stdout})`).toBe(expected.exitCode)

  const warnings = events.filter((event) => event.event === 'log').map((event) => event.message ?? '')
  const wanted = expected.warnings ?? []
  expect(warnings.length, `${label}: warnings ${JSON.stringify(warnings)}`).toBe(wanted.length)
  for (const text of wanted) expect(warnings.some((warning) => warning.includes(text)), `${label}: a warning containing ${JSON.stringify(text)} in ${JSON.stringify(warnings)}`).toBe(true)

  const ledger = readLedger(w.dir)
  expect(historyProblems(ledger), `${label}: history`).toEqual([])
  // Text copied from a file is cut before it reaches a message, and the ledger caps what it keeps: no case stores megabytes of input.
  const longest = Math.max(0, ...[...ledger.files, ...ledger.events].map((row) => row.error?.length ?? 0))
  expect(longest, `${label}: longest message in the ledger`).toBeLessThanOrEqual(MAX_MESSAGE_CHARS)
  // Nothing the case does not know about was touched.
  const listed = new Set(Object.keys(expected.files))
  const seen = new Set([...ledger.paths.map((entry) => entry.path), ...events.map((event) => event.path).filter((p): p is string => p !== undefined)])
  expect([...seen].filter((p) => !listed.has(p)), `${label}: files the case does not list`).toEqual([])

  let committedRows = 0
  for (const [relative, want] of Object.entries(expected.files)) {
    const where = `${label}: ${relative}`
    const record = recordAt(w, ledger, relative)
    if (want.state === 'ignored') {
      expect(seen.has(relative), `${where} must never be picked up`).toBe(false)
      continue
    }
    if (want.state === 'skipped') {
      expect(record, `${where} must not reach the ledger`).toBeUndefined()
      const skip = events.find((event) => event.event === 'file:skipped' && event.path === relative)
      expect(skip?.message ?? '', `${where}: skip reason`).toContain(want.reason)
      continue
    }
    expect(record?.state, `${where}: state (error: ${record?.error})`).toBe(want.state)
    const rows = tableRows(w, table, record!.hash)
    if (want.state === 'FAILED') {
      expect(rows, `${where}: a FAILED file has no rows`).toEqual([])
      // The message names the file, line and column, then the reason; the ledger keeps the same text.
      const prefix = `${relative}${want.line === undefined ? '' : `:${want.line}`}${want.column === undefined ? ':' : ` column ${want.column}:`}`
      expect(record!.error?.startsWith(prefix), `${where}: message ${JSON.stringify(record!.error)} starts with ${JSON.stringify(prefix)}`).toBe(true)
      expect(record!.error, `${where}: reason`).toContain(want.reason)
      // When this run tried the file, its event carries the same error as data (a rerun may not see a file that is gone).
      const failure = [...events].reverse().find((event) => event.event === 'file:failed' && event.hash === record!.hash)?.error
      if (failure !== undefined || first) {
        expect({ code: failure?.code, line: failure?.line, column: failure?.column, message: failure?.message }, where).toEqual({ code: want.code, line: want.line, column: want.column, message: record!.error })
      }
      continue
    }
    committedRows += rows.length
    expect(record!.rows, `${where}: rows recorded in the ledger`).toBe(rows.length)
    // Rows keep their record numbers: 1..n, but for the records a quarantine set aside.
    const aside = checkQuarantine(w, record!.hash, want.quarantine, where)
    const numbers = Array.from({ length: rows.length + aside.length }, (_, index) => index + 1).filter((row) => !aside.includes(row))
    expect(rows.map((row) => Number(row._source_row_number)), `${where}: row numbers`).toEqual(numbers)
    if (want.rowCount !== undefined) expect(rows.length, `${where}: row count`).toBe(want.rowCount)
    if (want.rows !== undefined) {
      const values = rows.map(({ _source_file_hash, _ingested_at, _source_row_number, ...row }) => row)
      expect(values.length, `${where}: row count`).toBe(want.rows.length)
      want.rows.forEach((row, index) => {
        expect(Object.keys(values[index]).sort(), `${where}: columns of row ${index + 1}`).toEqual(Object.keys(row).sort())
        for (const [column, value] of Object.entries(row)) {
          expect(matches(values[index][column], value), `${where}: row ${index + 1} column ${column} is ${JSON.stringify(values[index][column])?.slice(0, 200)}, expected ${JSON.stringify(value)}`).toBe(true)
        }
      })
    }
  }
  // Bad input never costs the good input next to it: every case has a control that commits rows.
  expect(committedRows, `${label}: rows committed by the case's good files`).toBeGreaterThan(0)
}

const cases = readdirSync(CORPUS, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name)
  .sort()

describe('bad-input corpus', () => {
  it('has at least 30 cases, each with its expected outcome', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30)
    for (const name of cases) expect(existsSync(path.join(CORPUS, name, 'expected.json')), `${name}/expected.json`).toBe(true)
  })

  describe.concurrent.each(cases)('%s', (name) => {
    it('ends every file as expected, and the good files still commit', async () => {
      const caseDir = path.join(CORPUS, name)
      const input: CaseInput = existsSync(path.join(caseDir, 'case.json')) ? readJson(path.join(caseDir, 'case.json')) : {}
      const expected = readJson<Expected>(path.join(caseDir, 'expected.json'))
      const w = workspace({ 'filedge.config.ts': configFor(caseDir, input) })
      try {
        if (existsSync(path.join(caseDir, 'incoming'))) cpSync(path.join(caseDir, 'incoming'), w.file('incoming'), { recursive: true, verbatimSymlinks: true })
        if (existsSync(path.join(caseDir, 'setup.mjs'))) {
          const setup = (await import(pathToFileURL(path.join(caseDir, 'setup.mjs')).href)) as { default: (dir: string) => Promise<void> | void }
          await setup.default(w.dir)
        }
        const table = (input.pipeline?.table as string | undefined) ?? 'rows'
        await runAndCheck(w, input, expected, table, name, true)
        if (expected.rerun !== undefined) await runAndCheck(w, input, expected.rerun, table, `${name} (rerun)`, false)
        if (expected.tables !== undefined) expect(destinationTables(w), `${name}: destination tables`).toEqual(expected.tables)
      } finally {
        w.remove()
      }
    })
  })
})
