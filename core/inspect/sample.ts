import { stat } from 'node:fs/promises'
import { DEFAULT_LIMITS } from '../config/limits.js'
import type { ResolvedFormat, ResolvedPipeline } from '../config/types.js'
import { fileInvalid } from '../errors.js'
import { loadCsv } from '../formats/csv.js'
import { readJsonObjects } from '../formats/json.js'
import { openParquet } from '../formats/parquet.js'
import { detectFormat } from '../formats/registry.js'
import type { LoadRequest } from '../hooks.js'
import { openLocalFile } from '../source/open.js'

export interface Sample {
  readonly format: string
  /** Field names in file order (for JSON: in order of first appearance). */
  readonly fields: readonly string[]
  /** Raw values as the format yields them, aligned with `fields`; undefined where a JSON object lacks the key. */
  readonly records: readonly (readonly unknown[])[]
}

/**
 * The first `rows` records of a file, read with the built-in formats and
 * nothing else: no config is needed, and only the start of the file is read
 * (except Parquet, whose index is at the end). The bytes are not verified
 * against a hash: nothing is loaded from them.
 */
export async function sampleFile(absPath: string, displayPath: string, rows: number, format?: ResolvedFormat): Promise<Sample> {
  const resolved = format ?? detectFormat(displayPath)
  if (resolved === undefined) throw fileInvalid(displayPath, "cannot tell the format from the file's extension; pass --format csv|ndjson|json|parquet")
  const { size, mtimeMs, ino } = await stat(absPath)
  const file = { hash: '', size, version: `${mtimeMs}:${ino}`, modifiedAt: mtimeMs, path: displayPath }
  const stream = openLocalFile(absPath, file, { verify: false })
  try {
    if (resolved.type === 'csv') {
      const pipeline = { batchSize: Math.min(rows, 10_000), columns: [], limits: DEFAULT_LIMITS } as unknown as ResolvedPipeline
      const request = { pipeline, file, format: resolved, open: () => stream, signal: new AbortController().signal } satisfies LoadRequest
      const raw = await loadCsv(request, stream)
      const records: unknown[][] = []
      for await (const batch of raw.batches) {
        records.push(...batch.records.slice(0, rows - records.length))
        if (records.length >= rows) break
      }
      return { format: 'csv', fields: raw.fields, records }
    }
    if (resolved.type === 'ndjson' || resolved.type === 'json') {
      const objects: Record<string, unknown>[] = []
      for await (const batch of readJsonObjects(resolved.type, stream, displayPath, Math.min(rows, 10_000))) {
        objects.push(...batch.objects.slice(0, rows - objects.length))
        if (objects.length >= rows) break
      }
      const fields = [...new Set(objects.flatMap((object) => Object.keys(object)))]
      return { format: resolved.type, fields, records: objects.map((object) => fields.map((field) => object[field])) }
    }
    if (resolved.type === 'parquet') {
      const parquet = await openParquet(stream, displayPath)
      const records: unknown[][] = []
      for await (const batch of parquet.batches({ limit: rows })) records.push(...batch.records)
      return { format: 'parquet', fields: parquet.fields, records }
    }
    throw fileInvalid(displayPath, `inspect reads csv, ndjson, json and parquet files; not "${resolved.type}"`)
  } finally {
    stream.destroy()
  }
}
