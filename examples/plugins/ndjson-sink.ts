// A complete custom destination: one NDJSON file per input file, written to a
// temp name and renamed into place, so a file's rows appear all at once or not
// at all, and rewriting a file replaces its output (idempotent by hash).
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { once } from 'node:events'
import path from 'node:path'
import { assertNoDrift, type ActualColumn, type Destination, type DriftCheck, PROVENANCE_COLUMNS } from 'filedge'

const sameType: DriftCheck = { expectedType: (type) => type, compatible: (actual, type) => actual.type === type }

export function ndjsonSink(options: { dir: string }): Destination {
  let root = options.dir
  const folder = (table: string) => path.join(root, encodeURIComponent(table))
  return {
    name: 'ndjson-sink',
    capabilities: { transactions: true, writeModes: ['append'] },
    describe: () => `ndjson files in ${root}`,
    async open({ config }) {
      root = path.resolve(config.root, options.dir)
    },
    async prepare(table) {
      const schemaFile = path.join(folder(table.name), '_schema.json')
      const columns = [...table.columns, ...PROVENANCE_COLUMNS].map((c) => ({ name: c.name, type: c.type, notNull: c.required }))
      const existing = await readFile(schemaFile, 'utf8').catch(() => undefined)
      if (existing !== undefined) return assertNoDrift(table, JSON.parse(existing) as ActualColumn[], sameType)
      await mkdir(folder(table.name), { recursive: true })
      await writeFile(schemaFile, JSON.stringify(columns))
    },
    async write(job) {
      const target = path.join(folder(job.table.name), `${job.file.hash}.ndjson`)
      const temp = `${target}.${process.pid}.tmp`
      const names = job.table.columns.map((c) => c.name)
      const out = createWriteStream(temp)
      let rows = 0
      try {
        for await (const batch of job.batches) {
          const lines = batch.rows.map((row, r) => {
            const record: Record<string, unknown> = { _source_file_hash: job.file.hash, _ingested_at: job.ingestedAt, _source_row_number: batch.rowNumbers[r] }
            names.forEach((name, c) => (record[name] = typeof row[c] === 'bigint' ? String(row[c]) : row[c]))
            return `${JSON.stringify(record)}\n`
          })
          if (!out.write(lines.join(''))) await once(out, 'drain')
          rows += lines.length
        }
        await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())))
        await job.assertLease()
        await rename(temp, target)
        return { rows }
      } catch (error) {
        out.destroy()
        await rm(temp, { force: true })
        throw error
      }
    },
  }
}
