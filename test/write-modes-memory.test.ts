import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { describePostgres } from './helpers/postgres.js'
import { target, type Target, type TargetName } from './helpers/targets.js'
import { workspace, type Workspace } from './helpers/workspace.js'

/**
 * CDC in bounded memory: a change file is staged in the destination and
 * collapsed there in SQL, never held in JavaScript. The real CLI loads a
 * 600,000-change file (37 MB) with its V8 heap capped at 96 MB, on each
 * destination through filedge's parser (DuckDB's native path would not read
 * the rows in JavaScript at all). The control run holds the same file's
 * batches in memory with a transform and must die of that cap: it shows the
 * cap is small enough to catch a destination that collapsed in JavaScript.
 * (Larger files, and the time and peak RSS per destination, are measured in
 * the README's "Write mode: cdc".)
 */

const CHANGES = 600_000
const KEYS = 200_000
const HEAP = ['--max-old-space-size=96']
const COLUMNS = "{ customer_id: 'integer', op: 'string', updated_at: 'timestamp', name: { type: 'string', required: true }, tier: 'integer' }"
const MODE = "{ cdc: { keys: ['customer_id'], op: 'op', sequence: 'updated_at', ops: { insert: ['c'], update: ['u'], delete: ['d'] } } }"
const HOLD = `export const hold = () => ({
  name: 'hold',
  apply({ hooks }) {
    hooks.transform.tapPromise('hold', async (batches) => {
      const all = []
      for await (const batch of batches) all.push(batch)
      return (async function* () { yield* all })()
    })
  },
})
`

let file: string
/** The expected outcome, computed while generating: each key's last change. */
let expected: { live: number; deleted: number; checksum: number }

beforeAll(() => {
  // mulberry32: deterministic and exact in JavaScript numbers.
  let seed = 7
  const random = () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const last = new Map<number, { op: string; tier: number; sequence: number }>()
  const lines = ['customer_id,op,updated_at,name,tier']
  const base = Date.UTC(2024, 0, 1)
  for (let i = 0; i < CHANGES; i++) {
    const key = Math.floor(random() * KEYS)
    const draw = random()
    const op = draw < 0.3 ? 'c' : draw < 0.9 ? 'u' : 'd'
    // Sequences are unique, but not in file order: a change may be older than the one before it.
    const sequence = i ^ 0x5
    lines.push(op === 'd' ? `${key},d,${new Date(base + sequence * 1000).toISOString()},,` : `${key},${op},${new Date(base + sequence * 1000).toISOString()},customer ${key} v${i},${i % 97}`)
    if ((last.get(key)?.sequence ?? -1) < sequence) last.set(key, { op, tier: i % 97, sequence })
  }
  file = `${lines.join('\n')}\n`
  let live = 0
  let checksum = 0
  for (const [key, change] of last) {
    if (change.op === 'd') continue
    live++
    checksum = (checksum + key * 131 + change.tier) % 1_000_000_007
  }
  expected = { live, deleted: last.size - live, checksum }
})

function suite(name: TargetName, destination?: string) {
  const wrap = name === 'postgres' ? describePostgres : describe
  wrap(`cdc memory: ${name}`, () => {
    let ws: Workspace | undefined
    let current: Target | undefined
    afterEach(async () => {
      ws?.remove()
      await current?.cleanup()
    })

    it(`a ${CHANGES.toLocaleString('en')}-change file loads with a 96 MB JavaScript heap`, { timeout: 180_000 }, async () => {
      current = target(name)
      const config = current.config({ columns: COLUMNS, writeMode: MODE })
      ws = workspace({ 'filedge.config.ts': destination === undefined ? config : config.replace(/destination: .*,\n/, `destination: ${destination},\n`), 'incoming/changes.csv': file })
      const result = await ws.cli(['--reporter', 'simple'], { env: { ...current.env, NODE_OPTIONS: HEAP.join(' ') } })
      expect(result.stderr).toBe('')
      expect(result.code).toBe(0)
      expect(result.stdout).toMatch(/committed 1 · failed 0/)
      const [row] = await current.select(ws, `SELECT count(*) AS live, sum((CAST(customer_id AS BIGINT) * 131 + CAST(tier AS BIGINT)) % 1000000007) AS checksum FROM {customers}`)
      const [deleted] = await current.select(ws, 'SELECT count(*) AS n FROM {customers__filedge_deleted}')
      expect({ live: Number(row.live), deleted: Number(deleted.n), checksum: Number(BigInt(String(row.checksum)) % 1_000_000_007n) }).toEqual(expected)
    })

    if (name === 'sqlite') {
      it('control: the same file held in memory by a transform does not fit under the same cap', { timeout: 180_000 }, async () => {
        current = target(name)
        ws = workspace({ 'filedge.config.ts': current.config({ columns: COLUMNS, writeMode: MODE, imports: "import { hold } from './hold.mjs'", plugins: 'hold()' }), 'hold.mjs': HOLD, 'incoming/changes.csv': file })
        const held = await ws.cli(['--reporter', 'simple'], { env: { ...current.env, NODE_OPTIONS: HEAP.join(' ') } })
        expect(held.code).not.toBe(0)
        expect(held.stderr).toMatch(/heap out of memory/)
      })
    }
  })
}

suite('sqlite')
suite('duckdb', "duckdb({ path: 'warehouse.duckdb', native: false })")
suite('postgres')
