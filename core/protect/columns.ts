import type { ResolvedColumn } from '../config/types.js'
import type { RowBatch, Value } from '../rows.js'
import { pseudonym, sealTexts } from './frame.js'
import type { ProtectKey } from './keys.js'

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

export type BatchProtector = (batch: RowBatch) => RowBatch

/** Protects a pipeline's columns in place, batch by batch; undefined when it has none. */
export function batchProtector(columns: readonly ResolvedColumn[], keys: ReadonlyMap<string, ProtectKey>): BatchProtector | undefined {
  const targets = columns.filter((column) => column.protect !== undefined).map((column) => ({ name: column.name, kind: column.protect!.kind, key: keys.get(column.name)! }))
  if (targets.length === 0) return undefined
  let layout: readonly string[] | undefined
  let at: number[] = []
  return (batch) => {
    if (batch.columns !== layout) {
      layout = batch.columns
      at = targets.map((target) => batch.columns.indexOf(target.name))
    }
    const { rows } = batch
    targets.forEach((target, t) => {
      const c = at[t]
      if (c < 0) return
      if (target.kind === 'hash') {
        for (let r = 0; r < rows.length; r++) {
          const value = rows[r][c]
          if (value !== null) rows[r][c] = pseudonym(target.key, textOf(value))
        }
        return
      }
      const texts: string[] = []
      const positions: number[] = []
      for (let r = 0; r < rows.length; r++) {
        const value = rows[r][c]
        if (value === null) continue
        texts.push(textOf(value))
        positions.push(r)
      }
      if (texts.length === 0) return
      const frames = sealTexts(target.key, texts)
      for (let k = 0; k < positions.length; k++) rows[positions[k]][c] = frames[k]
    })
    return batch
  }
}
