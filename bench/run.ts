import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { REPO_ROOT } from './project.js'
import { hashing, largeFile, sqliteBulk, sqliteSmallFiles, watchLatency, type BenchOptions, type Row } from './suites.js'

/**
 * `npm run bench`: filedge against the native bulk loaders, in one run,
 * alternating A/B, medians. Prints a table and writes bench/results/*.json.
 */

const SUITES: Record<string, (options: BenchOptions) => Promise<Row[]>> = {
  sqlite: sqliteBulk,
  small: sqliteSmallFiles,
  hash: hashing,
  large: largeFile,
  watch: watchLatency,
}

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    files: { type: 'string', default: '5000' },
    'rows-per-file': { type: 'string', default: '100' },
    reps: { type: 'string', default: '5' },
    large: { type: 'boolean', default: false },
    only: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})

if (values.help) {
  console.log(`npm run bench -- [--rows N] [--files N] [--rows-per-file N] [--reps N] [--large] [--only ${Object.keys(SUITES).join(',')}]`)
  process.exit(0)
}

const options: BenchOptions = {
  rows: Number(values.rows),
  files: Number(values.files),
  rowsPerFile: Number(values['rows-per-file']),
  reps: Number(values.reps),
  large: values.large,
  dataDir: path.join(REPO_ROOT, 'bench', '.data'),
}
const chosen = values.only ? values.only.split(',') : Object.keys(SUITES)

const rows: Row[] = []
for (const name of chosen) {
  const suite = SUITES[name]
  if (suite === undefined) throw new Error(`unknown suite "${name}"; have ${Object.keys(SUITES).join(', ')}`)
  process.stderr.write(`running ${name}…\n`)
  rows.push(...(await suite(options)))
}

const machine = { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGb: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.release()}` }
const table = [
  ['work', 'filedge', 'native', 'ratio', 'target', ''],
  ...rows.map((row) => [row.work, row.filedge, row.native ?? '', row.ratio === undefined ? '' : `${row.ratio.toFixed(2)}×`, row.target, row.met === undefined ? '' : row.met ? 'met' : 'MISSED']),
]
const widths = table[0].map((_, column) => Math.max(...table.map((line) => line[column].length)))
console.log(`\nfiledge bench — ${machine.cores} cores, ${machine.cpu}, Node ${machine.node}, median of ${options.reps}\n`)
for (const line of table) console.log(`| ${line.map((cell, column) => cell.padEnd(widths[column])).join(' | ')} |`)

const resultsDir = path.join(REPO_ROOT, 'bench', 'results')
mkdirSync(resultsDir, { recursive: true })
const file = path.join(resultsDir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(file, JSON.stringify({ machine, options, rows }, null, 2))
console.log(`\nresults: ${path.relative(process.cwd(), file)}`)
