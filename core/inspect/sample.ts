import { stat } from 'node:fs/promises'
import { DEFAULT_LIMITS } from '../config/limits.js'
import type { ResolvedFormat, ResolvedPipeline } from '../config/types.js'
import { fileInvalid } from '../errors.js'
import { loadCsv } from '../formats/csv.js'
import { readFixed } from '../formats/fixed.js'
import { readJsonObjects } from '../formats/json.js'
import { openParquet } from '../formats/parquet.js'
import { detectFormat } from '../formats/registry.js'
import { loadXlsx } from '../formats/xlsx.js'
import type { LoadRequest } from '../hooks.js'
import type { RawRows } from '../rows.js'
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
 * nothing else: no config is needed (a fixed-width file's layout comes from
 * a pipeline's format), and only the start of the file is read (except
 * Parquet and Excel, whose indexes are at the end). The bytes are not
 * verified against a hash: nothing is loaded from them.
 */
export async function sampleFile(absPath: string, displayPath: string, rows: number, format?: ResolvedFormat): Promise<Sample> {
  const resolved = format ?? detectFormat(displayPath)
  if (resolved === undefined) throw fileInvalid(displayPath, "cannot tell the format from the file's extension; pass --format csv|ndjson|json|parquet|xlsx")
  const { size, mtimeMs, ino } = await stat(absPath)
  const file = { hash: '', size, version: `${mtimeMs}:${ino}`, modifiedAt: mtimeMs, path: displayPath }
  const stream = openLocalFile(absPath, file, { verify: false })
  // The formats that read through `load` get a request of their own: no config, default limits, every field wanted.
  const pipeline = { batchSize: Math.min(rows, 10_000), columns: [], limits: DEFAULT_LIMITS, unknownColumns: 'error' } as unknown as ResolvedPipeline
  const request = { pipeline, file, format: resolved, open: () => stream, signal: new AbortController().signal } satisfies LoadRequest
  const first = async (raw: RawRows): Promise<Sample> => {
    const records: unknown[][] = []
    try {
      for await (const batch of raw.batches) {
        records.push(...batch.records.slice(0, rows - records.length))
        if (records.length >= rows) break
      }
    } finally {
      raw.close?.()
    }
    return { format: resolved.type, fields: raw.fields, records }
  }
  try {
    if (resolved.type === 'csv') return await first(await loadCsv(request, stream))
    if (resolved.type === 'xlsx') return await first(await loadXlsx(request))
    if (resolved.type === 'fixed') return await first(readFixed(request))
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
    throw fileInvalid(displayPath, `inspect reads csv, ndjson, json, parquet, xlsx and fixed-width files; not "${resolved.type}"`)
  } finally {
    stream.destroy()
  }
}
