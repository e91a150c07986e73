import { createHash } from 'node:crypto'

/**
 * Generated order files for the suites that load hundreds of them. Every row
 * has a globally unique `id`, so the sum of ids per file hash is a checksum:
 * a missing, duplicated or foreign row changes it.
 */

export const ORDER_COLUMNS = `{
  id: { type: 'integer', required: true },
  customer: 'string',
  amount: { type: 'decimal', precision: 12, scale: 2, required: true },
  placed_at: 'timestamp',
}`

export interface GeneratedFile {
  readonly name: string
  readonly content: string
  readonly hash: string
  readonly rows: number
  /** Sum of `id` over the rows. */
  readonly sum: number
}

const CUSTOMERS = ['Acme', 'Globex, Inc.', 'Initech "IT"', 'Umbrella\nCorp', 'Søren & Co', '']

function quote(value: string): string {
  return /[",\n\r]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value
}

/**
 * A file whose rows have ids `firstId`, `firstId + 1`, … With `badRecord`, that
 * record (1-based) gets an amount with three decimals: the file must end FAILED
 * naming the line the record starts on (`badLine`), and load nothing.
 */
export function ordersFile(name: string, firstId: number, rows: number, rng: () => number, badRecord?: number): GeneratedFile & { readonly badLine?: number } {
  let content = 'id,customer,amount,placed_at\n'
  let line = 2
  let badLine: number | undefined
  let sum = 0
  for (let r = 1; r <= rows; r++) {
    const id = firstId + r - 1
    sum += id
    const customer = CUSTOMERS[Math.floor(rng() * CUSTOMERS.length)]
    const amount = r === badRecord ? '12.345' : (Math.floor(rng() * 1_000_000) / 100).toFixed(2)
    const second = String(Math.floor(rng() * 60)).padStart(2, '0')
    if (r === badRecord) badLine = line
    const record = `${id},${quote(customer)},${amount},2024-05-01T12:00:${second}Z\n`
    content += record
    line += record.split('\n').length - 1
  }
  return { name, content, hash: createHash('sha256').update(content).digest('hex'), rows, sum, ...(badLine === undefined ? {} : { badLine }) }
}
