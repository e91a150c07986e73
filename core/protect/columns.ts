import type { ResolvedColumn } from '../config/types.js'
import type { RowBatch, Value } from '../rows.js'
import type { ProtectKey } from './keys.js'
import { protectValues } from './pool.js'
import { packTexts, unpackValues } from './seal.js'

/**
 * Protected columns, applied to each batch right after coercion: the value
 * was checked as its column's type, and from here on only its frame
 * (`encrypt`) or its pseudonym (`hash`) exists. So the cache plugin keeps
 * frames, stages see frames, the destination stores frames; NULL stays NULL.
 *
 * The text sealed or hashed is the value as coercion typed it: strings as
 * they are, integers and floats in JavaScript's shortest form (`42`,
 * `0.1`), decimals at their scale (`129.90`), dates `YYYY-MM-DD`,
 * timestamps `YYYY-MM-DDTHH:MM:SS.ffffffZ`, booleans `true`/`false`, json
 * as its canonical text.
 */

function textOf(value: Value): string {
  return typeof value === 'string' ? value : String(value)
}

export type BatchProtector = (batch: RowBatch) => Promise<RowBatch>

/** Protects a pipeline's columns in place, batch by batch (on the worker, pool.ts); undefined when it has none. */
export function batchProtector(columns: readonly ResolvedColumn[], keys: ReadonlyMap<string, ProtectKey>): BatchProtector | undefined {
  const targets = columns.filter((column) => column.protect !== undefined).map((column) => ({ name: column.name, kind: column.protect!.kind, key: keys.get(column.name)! }))
  if (targets.length === 0) return undefined
  let layout: readonly string[] | undefined
  let at: number[] = []
  return async (batch) => {
    if (batch.columns !== layout) {
      layout = batch.columns
      at = targets.map((target) => batch.columns.indexOf(target.name))
    }
    const { rows } = batch
    // Every column's values go out at once; each comes back into the rows it was taken from.
    const jobs = targets.map(async (target, t) => {
      const c = at[t]
      if (c < 0) return
      const texts: string[] = []
      const positions: number[] = []
      for (let r = 0; r < rows.length; r++) {
        const value = rows[r][c]
        if (value === null) continue
        texts.push(textOf(value))
        positions.push(r)
      }
      if (texts.length === 0) return
      const values = unpackValues(await protectValues({ kind: target.kind, key: target.key.bytes, keyId: target.key.id, ...packTexts(texts) }))
      for (let k = 0; k < positions.length; k++) rows[positions[k]][c] = values[k]
    })
    await Promise.all(jobs)
    return batch
  }
}

/**
 * The batches, protected, with the next ones' protection under way while a
 * batch is handed on: the worker seals batch n + 1 while the destination
 * writes batch n and the format parses batch n + 2.
 */
export async function* protectBatches(batches: AsyncIterable<RowBatch>, protector: BatchProtector, ahead = 2): AsyncGenerator<RowBatch> {
  const source = batches[Symbol.asyncIterator]()
  const queue: Promise<RowBatch>[] = []
  let done = false
  try {
    for (;;) {
      while (!done && queue.length < ahead) {
        const next = await source.next()
        if (next.done === true) {
          done = true
          break
        }
        const protecting = protector(next.value)
        // Awaited in turn below; until then a failure must not count as unhandled.
        protecting.catch(() => undefined)
        queue.push(protecting)
      }
      const first = queue.shift()
      if (first === undefined) return
      yield await first
    }
  } finally {
    if (!done) await source.return?.(undefined)
  }
}
