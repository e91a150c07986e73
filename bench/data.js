// Deterministic benchmark data: the same bytes on every machine and every run,
// so results/ files from different days compare. No Math.random: a small LCG.
import { createWriteStream, existsSync, statSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { once } from 'node:events'

const STATUSES = ['paid', 'shipped', 'cancelled', 'refunded', 'pending']
const WORDS = ['leave', 'at', 'door', 'gift', 'wrap', 'fragile', 'call', 'before', 'delivery', 'back', 'entrance', 'reception', 'weekday', 'only', 'signature', 'required']

function lcg(seed) {
  let state = seed >>> 0
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return state / 2 ** 32
  }
}

/** One row per order: string id, integer, 2-decimal amount, ISO date, status, a note (~15% quoted, with a comma). */
export const ORDERS_COLUMNS = {
  order_id: { type: 'string', required: true },
  customer_id: { type: 'integer', required: true },
  amount: { type: 'decimal', precision: 12, scale: 2, required: true },
  order_date: { type: 'date', required: true },
  status: 'string',
  note: 'string',
}

export async function ordersCsv(file, rows) {
  if (existsSync(file) && statSync(file).size > 0) return file
  await mkdir(path.dirname(file), { recursive: true })
  const random = lcg(42)
  const out = createWriteStream(file)
  out.write('order_id,customer_id,amount,order_date,status,note\n')
  let chunk = ''
  for (let i = 1; i <= rows; i++) {
    const day = 1 + Math.floor(random() * 28)
    const month = 1 + Math.floor(random() * 12)
    const amount = (random() * 5000).toFixed(2)
    const words = []
    for (let w = 0, n = 3 + Math.floor(random() * 3); w < n; w++) words.push(WORDS[Math.floor(random() * WORDS.length)])
    const quoted = random() < 0.15
    const note = quoted ? `"${words.slice(0, 2).join(' ')}, ${words.slice(2).join(' ')}"` : words.join(' ')
    chunk += `ORD-${String(i).padStart(8, '0')},${Math.floor(random() * 1_000_000)},${amount},2024-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')},${STATUSES[Math.floor(random() * STATUSES.length)]},${note}\n`
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await once(out, 'drain')
      chunk = ''
    }
  }
  out.end(chunk)
  await once(out, 'finish')
  return file
}
