import type { Key } from './batch.js'
import type { Manifest } from './folder.js'

/**
 * Which messages are already in a promoted file (or dead-letter file): a
 * message delivered again after its batch was promoted (the process stopped
 * before its ack reached the broker, the broker restarted and forgot the
 * ack) is acknowledged without being written a second time.
 *
 * Sequences are kept as merged ranges: a log read in order collapses to a
 * few ranges however long it is, so every manifest ever promoted is
 * remembered. Ids (RabbitMQ) are kept for the newest `rememberIds` messages,
 * a window of batches: an id is looked up only for a delivery the broker
 * flags as redelivered, and a redelivery comes back within moments of the
 * stop or restart that caused it, not a million messages later.
 */
export interface PromotedIndex {
  has(key: Key): boolean
  add(manifest: Manifest): void
}

export function sequenceIndex(): PromotedIndex {
  // Disjoint, sorted, merged: [[first, last], …].
  const ranges: [number, number][] = []
  const insert = (from: number, to: number) => {
    let lo = 0
    let hi = ranges.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (ranges[mid][1] < from - 1) lo = mid + 1
      else hi = mid
    }
    let end = lo
    let start = from
    let stop = to
    while (end < ranges.length && ranges[end][0] <= to + 1) {
      start = Math.min(start, ranges[end][0])
      stop = Math.max(stop, ranges[end][1])
      end++
    }
    ranges.splice(lo, end - lo, [start, stop])
  }
  return {
    has(key) {
      if (typeof key !== 'number') return false
      let lo = 0
      let hi = ranges.length - 1
      while (lo <= hi) {
        const mid = (lo + hi) >> 1
        if (ranges[mid][1] < key) lo = mid + 1
        else if (ranges[mid][0] > key) hi = mid - 1
        else return true
      }
      return false
    },
    add(manifest) {
      for (const [from, to] of [...(manifest.sequences ?? []), ...(manifest.deadLetters?.sequences ?? [])]) insert(from, to)
    },
  }
}

export function idIndex(rememberIds: number): PromotedIndex {
  const counts = new Map<string, number>()
  const batches: string[][] = []
  let size = 0
  return {
    has: (key) => typeof key === 'string' && counts.has(key),
    add(manifest) {
      const ids = [...(manifest.ids ?? []), ...(manifest.deadLetters?.ids ?? [])]
      batches.push(ids)
      for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1)
      size += ids.length
      // Whole batches leave the window, oldest first; the newest batch always stays.
      while (size > rememberIds && batches.length > 1) {
        const oldest = batches.shift()!
        size -= oldest.length
        for (const id of oldest) {
          const left = counts.get(id)! - 1
          if (left === 0) counts.delete(id)
          else counts.set(id, left)
        }
      }
    },
  }
}
