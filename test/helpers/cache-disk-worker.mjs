// A process using the disk cache (the built module), for test/cache-disk.test.ts.
// Prints one JSON line with what it saw. Modes:
//
//   contend <dir> <key> <id> <rounds> <go-file>
//     waits for <go-file>, then `rounds` times sets <key> to 256 KiB filled with byte <id> and
//     reads it back (get, or getStream every other round); counts reads that are not one
//     whole value of a single byte below 20.
//   slow <dir> <key>
//     setStream of a stream that never ends (64 KiB every 10 ms), to be killed mid-write.
//   big <dir> <bytes> <none|gzip|brotli>
//     streams <bytes> through setStream and back through getStream; reports both sha256,
//     the time taken and process.resourceUsage().maxRSS (KB).
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { createDiskCache } from '../../dist/plugins/cache/disk.js'

const VALUE_BYTES = 256 * 1024
const WRITERS = 20
const [mode, dir, ...args] = process.argv.slice(2)

function report(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`)
}

async function contend(key, id, rounds, goFile) {
  const cache = createDiskCache({ dir })
  const mine = Buffer.alloc(VALUE_BYTES, Number(id))
  const whole = Array.from({ length: WRITERS }, (_, byte) => Buffer.alloc(VALUE_BYTES, byte))
  const seen = { reads: 0, missesBeforeSet: 0, missesAfterSet: 0, bad: 0, values: new Set() }
  const check = (value, afterSet) => {
    seen.reads++
    if (value === undefined) return void (afterSet ? seen.missesAfterSet++ : seen.missesBeforeSet++)
    if (!Buffer.isBuffer(value) || value.length !== VALUE_BYTES || value[0] >= WRITERS || !value.equals(whole[value[0]])) return void seen.bad++
    seen.values.add(value[0])
  }
  while (!existsSync(goFile)) await sleep(5)
  check(await cache.get(key), false)
  for (let round = 0; round < Number(rounds); round++) {
    await cache.set(key, mine)
    if (round % 2 === 0) check(await cache.get(key), true)
    else {
      const stream = await cache.getStream(key)
      check(stream && Buffer.concat(await stream.toArray()), true)
    }
  }
  await cache.close()
  report({ ...seen, values: [...seen.values] })
}

async function slow(key) {
  const cache = createDiskCache({ dir })
  async function* endless() {
    for (;;) {
      yield randomBytes(64 * 1024)
      await sleep(10)
    }
  }
  await cache.setStream(key, endless())
}

async function big(total, compression) {
  const cache = createDiskCache({ dir })
  const compress = compression === 'none' ? false : compression
  // Random bytes when stored as is; text when compressed (random bytes would not compress).
  const text = () => Array.from({ length: 60_000 }, (_, i) => `${i},${(i * 7919) % 100_003}.${i % 100},EUR\n`).join('')
  const base = compress ? Buffer.from(text()).subarray(0, 1 << 20) : randomBytes(1 << 20)
  const written = createHash('sha256')
  async function* source() {
    for (let offset = 0, n = 0; offset < total; offset += base.length, n++) {
      const chunk = Buffer.from(base.subarray(0, Math.min(base.length, total - offset)))
      chunk.writeUInt32BE(n, 0)
      written.update(chunk)
      yield chunk
    }
  }
  const started = Date.now()
  const info = await cache.setStream('big', source(), { compress })
  const wroteMs = Date.now() - started
  const read = createHash('sha256')
  let readBytes = 0
  for await (const chunk of await cache.getStream('big')) {
    readBytes += chunk.length
    read.update(chunk)
  }
  await cache.close()
  report({
    info,
    readBytes,
    written: written.digest('hex'),
    read: read.digest('hex'),
    wroteMs,
    readMs: Date.now() - started - wroteMs,
    maxRssKb: process.resourceUsage().maxRSS,
  })
}

switch (mode) {
  case 'contend':
    await contend(...args)
    break
  case 'slow':
    await slow(...args)
    break
  case 'big':
    await big(Number(args[0]), args[1])
    break
  default:
    throw new Error(`unknown mode ${mode}`)
}
