import { describe, expect, it } from 'vitest'
import { env, isFiledgeError } from '../core/index.js'
import { jetstream, rabbitmq } from '../plugins/queue/index.js'
import type { Manifest } from '../plugins/queue/folder.js'
import { idIndex, sequenceIndex } from '../plugins/queue/promoted.js'

/** The queue sources' parts that need no broker: options checked when the config loads (each mistake named with its fix), and the index of promoted messages. */

function refused(make: () => unknown): string {
  try {
    make()
  } catch (error) {
    expect(isFiledgeError(error) && error.code).toBe('CONFIG_INVALID')
    return (error as Error).message
  }
  throw new Error('expected the options to be refused')
}

const js = { servers: '127.0.0.1:4222', stream: 'ORDERS', consumer: 'filedge' }

describe('queue source options', () => {
  it('jetstream: unknown options, bad values, a credential in a URL or written into the config, and a batch that outlives the ack wait are refused', () => {
    expect(refused(() => jetstream({ ...js, maxRecord: 10 } as never))).toMatch(/^jetstream\.maxRecord: unknown option \(expected one of maxRecords, /)
    expect(refused(() => jetstream({ ...js, maxWait: 'soon' as never }))).toBe("jetstream.maxWait: expected a duration such as '1s' or '200ms'; got \"soon\"")
    expect(refused(() => jetstream({ ...js, maxBytes: '16MB' as never }))).toBe("jetstream.maxBytes: expected a size such as '16MiB' or a number of bytes; got \"16MB\"")
    expect(refused(() => jetstream({ ...js, servers: 'nats://me:secret@127.0.0.1:4222' }))).toMatch(/^jetstream\.servers: credentials in a server URL/)
    expect(refused(() => jetstream({ ...js, pass: 'secret' as never }))).toBe("jetstream.pass: a credential is given with env('NAME'), never written into the config")
    expect(refused(() => jetstream({ ...js, consumer: 'a.b' }))).toMatch(/^jetstream\.consumer: a durable name cannot hold/)
    expect(refused(() => jetstream({ ...js, maxWait: '20s', ackWait: '30s' }))).toMatch(/^jetstream\.maxWait: a batch stays open up to maxWait \(20000 ms\) .* under half of ackWait \(30000 ms\)$/)
    expect(jetstream({ ...js, pass: env('NATS_PASS'), user: 'filedge', maxWait: '200ms', maxRecords: 500 }).describe()).toBe('jetstream nats://127.0.0.1:4222 stream ORDERS consumer filedge')
  })

  it('rabbitmq: a password written into the URL is refused (env() instead), and so are unknown messageId kinds', () => {
    expect(refused(() => rabbitmq({ url: 'amqp://guest:guest@127.0.0.1:5672', queue: 'orders' }))).toBe("rabbitmq.url: a password written into the config would end up in version control; give the URL with env('RABBITMQ_URL')")
    expect(refused(() => rabbitmq({ url: 'http://127.0.0.1', queue: 'orders' }))).toMatch(/^rabbitmq\.url: expected env\('RABBITMQ_URL'\) or an amqp:\/\/ URL without a password/)
    expect(refused(() => rabbitmq({ url: env('RABBITMQ_URL'), queue: 'orders', messageId: 'header' as never }))).toBe("rabbitmq.messageId: expected 'property', 'content' or { field: 'id' }; got \"header\"")
    expect(refused(() => rabbitmq({ url: env('RABBITMQ_URL'), queue: '' }))).toBe('rabbitmq.queue: expected a non-empty name; got ""')
    expect(rabbitmq({ url: env('FILEDGE_TEST_UNSET_URL'), queue: 'orders', messageId: { field: 'id' } }).describe()).toBe('rabbitmq env(FILEDGE_TEST_UNSET_URL) queue orders')
    process.env.FILEDGE_TEST_QUEUE_URL = 'amqp://filedge:s3cret-pw@mq.internal:5672/prod'
    expect(rabbitmq({ url: env('FILEDGE_TEST_QUEUE_URL'), queue: 'orders' }).describe()).toBe('rabbitmq amqp://filedge:***@mq.internal:5672/prod queue orders')
  })
})

it('promoted sequences merge into ranges and ids leave the window a batch at a time', () => {
  const manifest = (batch: number, extra: Partial<Manifest>) => ({ batch, deadLetters: null, ...extra }) as unknown as Manifest
  const sequences = sequenceIndex()
  sequences.add(manifest(1, { sequences: [[1, 10], [12, 20]], deadLetters: { file: 'd', count: 1, sha256: '', sequences: [[11, 11]] } }))
  sequences.add(manifest(2, { sequences: [[30, 40]] }))
  sequences.add(manifest(3, { sequences: [[21, 29]] }))
  expect([0, 1, 11, 20, 25, 40, 41].map((seq) => sequences.has(seq))).toEqual([false, true, true, true, true, true, false])

  const window = idIndex(4)
  window.add(manifest(1, { ids: ['a', 'b'] }))
  window.add(manifest(2, { ids: ['c', 'd'], deadLetters: { file: 'd', count: 1, sha256: '', ids: ['e'] } }))
  // Five ids over a window of four: batch 1 leaves whole.
  expect(['a', 'b', 'c', 'd', 'e'].map((id) => window.has(id))).toEqual([false, false, true, true, true])
  window.add(manifest(3, { ids: Array.from({ length: 10 }, (_, i) => `x${i}`) }))
  // A batch larger than the window stays: the newest batch is always remembered.
  expect([window.has('c'), window.has('x0'), window.has('x9')]).toEqual([false, true, true])
})
