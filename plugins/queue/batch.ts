import type { Delivery, Identity } from './broker.js'

/**
 * A batch being filled: the messages that become one NDJSON file, the ones
 * that become dead letters, and every delivery to acknowledge once the file
 * is promoted (a message delivered twice while its batch was open is written
 * once and acknowledged twice).
 *
 * A record is the message's JSON as sent, on one line: a JSON text cannot
 * hold a raw line break inside a string, so removing CR and LF from a valid
 * one only joins its lines (number digits, key order and escapes are kept).
 */

export interface DeadLetter {
  readonly sequence?: number
  readonly id?: string
  readonly subject?: string
  readonly reason: string
  readonly bytes: number
  readonly redelivered: boolean
  readonly receivedAt: string
  /** The body as text when it is UTF-8, else `payloadBase64`. */
  readonly payload?: string
  readonly payloadBase64?: string
}

/** A message's identity as a key: its sequence, or its id. */
export type Key = number | string

export interface Batch {
  /** When its first delivery arrived: maxWait counts from here. */
  openedAt: number
  /** Records in arrival order, with their keys. */
  readonly records: string[]
  readonly recordKeys: Key[]
  readonly dead: DeadLetter[]
  /** Undefined for a message without an identity (no message id): it cannot be recognised when delivered again. */
  readonly deadKeys: (Key | undefined)[]
  /** Everything delivered into this batch: acknowledged once it is promoted, handed back if it is abandoned. */
  readonly deliveries: Delivery[]
  readonly keys: Set<Key>
  bytes: number
  duplicates: number
}

export function openBatch(): Batch {
  return { openedAt: Date.now(), records: [], recordKeys: [], dead: [], deadKeys: [], deliveries: [], keys: new Set(), bytes: 0, duplicates: 0 }
}

export const messages = (batch: Batch) => batch.records.length + batch.dead.length

const utf8 = new TextDecoder('utf-8', { fatal: true })

function describeValue(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return `a ${typeof value}`
}

export interface Classifier {
  readonly identity: Identity
  readonly maxMessageBytes: number
  /** RabbitMQ `messageId: { field }`: the id is this top-level field of the body. */
  readonly idField?: string
}

/**
 * The record a delivery becomes, or why it is a dead letter. Its key is its
 * sequence, or its id (taken from the body for `messageId: { field }`).
 */
export function classify(delivery: Delivery, classifier: Classifier): { key?: Key; record?: string; reason?: string } {
  const known = classifier.identity === 'sequence' ? delivery.seq : delivery.id
  if (delivery.problem !== undefined) return { key: known, reason: delivery.problem }
  const size = delivery.data.byteLength
  if (size > classifier.maxMessageBytes) return { key: known, reason: `too large: ${size} bytes (maxMessageBytes is ${classifier.maxMessageBytes})` }
  let text: string
  try {
    text = utf8.decode(delivery.data)
  } catch {
    return { key: known, reason: 'not UTF-8 text' }
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    return { key: known, reason: `not JSON: ${(error as Error).message}` }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { key: known, reason: `not a JSON object: ${describeValue(value)}` }
  let key = known
  if (classifier.idField !== undefined) {
    const id = (value as Record<string, unknown>)[classifier.idField]
    if (typeof id !== 'string' && !(typeof id === 'number' && Number.isFinite(id))) {
      return { reason: `no message id: the field "${classifier.idField}" is ${id === undefined ? 'missing' : describeValue(id)} (messageId: { field: '${classifier.idField}' })` }
    }
    key = String(id)
  }
  const record = text.includes('\n') || text.includes('\r') ? text.replace(/[\r\n]/g, '').trim() : text.trim()
  return { key, record }
}

export function deadLetter(delivery: Delivery, reason: string, key: Key | undefined): DeadLetter {
  let text: string | undefined
  try {
    text = utf8.decode(delivery.data)
  } catch {
    text = undefined
  }
  return {
    ...(typeof key === 'number' ? { sequence: key } : {}),
    ...(typeof key === 'string' ? { id: key } : delivery.id !== undefined ? { id: delivery.id } : {}),
    ...(delivery.subject === undefined ? {} : { subject: delivery.subject }),
    reason,
    bytes: delivery.data.byteLength,
    redelivered: delivery.redelivered,
    receivedAt: new Date().toISOString(),
    ...(text === undefined ? { payloadBase64: Buffer.from(delivery.data.buffer, delivery.data.byteOffset, delivery.data.byteLength).toString('base64') } : { payload: text }),
  }
}

/** Sequences as ranges, in the order given: [1, 2, 3, 7] → [[1, 3], [7, 7]]. */
export function toRanges(sequences: readonly number[]): [number, number][] {
  const ranges: [number, number][] = []
  for (const seq of sequences) {
    const last = ranges[ranges.length - 1]
    if (last !== undefined && seq === last[1] + 1) last[1] = seq
    else ranges.push([seq, seq])
  }
  return ranges
}

/** Records in sequence order (JetStream: a redelivery can arrive after later messages; the file is in stream order). */
export function ordered(batch: Batch): { records: string[]; keys: Key[] } {
  const keys = batch.recordKeys
  let sorted = true
  for (let i = 1; i < keys.length && sorted; i++) sorted = (keys[i - 1] as number) < (keys[i] as number)
  if (sorted) return { records: batch.records, keys }
  const order = keys.map((_, i) => i).sort((a, b) => (keys[a] as number) - (keys[b] as number))
  return { records: order.map((i) => batch.records[i]), keys: order.map((i) => keys[i]) }
}
