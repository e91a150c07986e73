import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, statSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { once } from 'node:events'
import path from 'node:path'

/**
 * Deterministic benchmark data (no network, same bytes on every machine):
 * orders with a string id, an integer, a 2-decimal amount, an ISO date, a
 * status and a note of which about 15% contain a comma and are quoted.
 */

const STATUSES = ['new', 'paid', 'shipped', 'cancelled', 'refunded']
export const ORDERS_HEADER = 'order_id,customer_id,amount,order_date,status,note'

/** Park–Miller: tiny, fast, reproducible. */
function random(seed: number): () => number {
  let state = seed % 2147483647 || 1
  return () => (state = (state * 48271) % 2147483647)
}

function ordersLines(count: number, seed: number, firstId: number): string[] {
  const next = random(seed)
  const lines: string[] = new Array(count)
  for (let i = 0; i < count; i++) {
    const r = next()
    const amount = ((r % 10_000_000) / 100).toFixed(2)
    const month = String(1 + (r % 12)).padStart(2, '0')
    const day = String(1 + (r % 28)).padStart(2, '0')
    const note = r % 100 < 15 ? `"gift, wrapped ${r % 9973} with care"` : `standard delivery ${r % 9973} to door`
    lines[i] = `ORD-${String(firstId + i).padStart(9, '0')},${r % 1_000_000},${amount},2024-${month}-${day},${STATUSES[r % STATUSES.length]},${note}`
  }
  return lines
}

async function writeAtomically(target: string, produce: (write: (text: string) => Promise<void>) => Promise<void>): Promise<void> {
  mkdirSync(path.dirname(target), { recursive: true })
  const temp = `${target}.tmp`
  const out = createWriteStream(temp)
  await produce(async (text) => {
    if (!out.write(text)) await once(out, 'drain')
  })
  out.end()
  await once(out, 'finish')
  renameSync(temp, target)
}

/**
 * A CSV of `rows` orders (~74 bytes a row), each line through `line` (its
 * record number, 1-based) when given. Reused when it already exists.
 */
export async function ordersCsv(target: string, rows: number, seed = 1, line?: (text: string, record: number) => string): Promise<{ file: string; rows: number; bytes: number }> {
  if (!existsSync(target)) {
    await writeAtomically(target, async (write) => {
      await write(`${ORDERS_HEADER}\n`)
      const chunk = 20_000
      for (let start = 0; start < rows; start += chunk) {
        const count = Math.min(chunk, rows - start)
        const lines = ordersLines(count, seed + start, start + 1)
        await write(`${(line === undefined ? lines : lines.map((text, i) => line(text, start + i + 1))).join('\n')}\n`)
      }
    })
  }
  return { file: target, rows, bytes: statSync(target).size }
}

/**
 * The `rows` orders of `ordersCsv`, but every `every`-th record's amount is
 * `n/a` (a float column refuses it): 1% bad records with `every` 100, spread
 * evenly, as a partner's export with a placeholder here and there. Reused
 * when it exists.
 */
export async function ordersCsvWithBadRows(target: string, rows: number, every: number, seed = 1): Promise<{ file: string; rows: number; bad: number; bytes: number }> {
  const written = await ordersCsv(target, rows, seed, (text, record) => (record % every === 0 ? text.replace(/^([^,]*,[^,]*,)[^,]*/, '$1n/a') : text))
  return { ...written, bad: Math.floor(rows / every) }
}

/** `files` CSVs of `rowsPerFile` orders each, every file different. Reused when the folder is complete. */
export async function smallFiles(dir: string, files: number, rowsPerFile: number): Promise<{ dir: string; files: number; rows: number }> {
  const done = path.join(dir, '.complete')
  if (!existsSync(done)) {
    for (let index = 0; index < files; index++) {
      const name = path.join(dir, `orders-${String(index).padStart(5, '0')}.csv`)
      await writeAtomically(name, async (write) => write(`${ORDERS_HEADER}\n${ordersLines(rowsPerFile, 7919 * (index + 1), index * rowsPerFile + 1).join('\n')}\n`))
    }
    await writeAtomically(done, async (write) => write(String(files)))
  }
  return { dir, files, rows: files * rowsPerFile }
}

/**
 * The small files' rows, all in one CSV, each with the provenance values
 * filedge writes on it (its own file's SHA-256, a fixed ingestion time, its
 * record number in that file): what `sqlite3 .import` needs to fill the very
 * table filedge fills from those files. Reused when it exists.
 */
export async function smallFilesWithProvenance(source: { dir: string; files: number; rows: number }): Promise<{ file: string; rows: number }> {
  const target = path.join(source.dir, '.all.provenance.csv')
  if (!existsSync(target)) {
    await writeAtomically(target, async (write) => {
      let rows = 0
      await write(`${ORDERS_HEADER},_source_file_hash,_ingested_at,_source_row_number\n`)
      for (let index = 0; index < source.files; index++) {
        const bytes = readFileSync(path.join(source.dir, `orders-${String(index).padStart(5, '0')}.csv`))
        const suffix = `,${createHash('sha256').update(bytes).digest('hex')},2026-01-01T00:00:00.000Z,`
        const lines = bytes.toString('utf8').trimEnd().split('\n').slice(1)
        await write(`${lines.map((line, record) => `${line}${suffix}${record + 1}`).join('\n')}\n`)
        rows += lines.length
      }
      if (rows !== source.rows) throw new Error(`${source.dir}: ${rows} records, expected ${source.rows}`)
    })
  }
  return { file: target, rows: source.rows }
}

/**
 * The orders CSV with the three provenance values filedge writes on every row
 * appended to each line — the file's SHA-256, a fixed ingestion time, the
 * record number — so a native loader can fill the very table filedge fills.
 * Every orders record is one line (the generator writes no line breaks inside
 * quotes), so the line index is the record number. Reused when it exists.
 */
export async function withProvenance(source: { file: string; rows: number }): Promise<{ file: string; rows: number; bytes: number }> {
  const target = source.file.replace(/\.csv$/, '.provenance.csv')
  if (!existsSync(target)) {
    const hash = createHash('sha256')
    for await (const chunk of createReadStream(source.file)) hash.update(chunk as Buffer)
    const suffix = `,${hash.digest('hex')},2026-01-01T00:00:00.000Z,`
    await writeAtomically(target, async (write) => {
      const lines = createInterface({ input: createReadStream(source.file), crlfDelay: Infinity })
      let index = -1
      let batch: string[] = []
      for await (const line of lines) {
        batch.push(index < 0 ? `${line},_source_file_hash,_ingested_at,_source_row_number` : `${line}${suffix}${index + 1}`)
        index++
        if (batch.length === 20_000) {
          await write(`${batch.join('\n')}\n`)
          batch = []
        }
      }
      if (batch.length > 0) await write(`${batch.join('\n')}\n`)
      if (index !== source.rows) throw new Error(`${source.file}: ${index} lines after the header, expected ${source.rows}`)
    })
  }
  return { file: target, rows: source.rows, bytes: statSync(target).size }
}
