import { execFile, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import { connect as natsConnect } from '@nats-io/transport-node'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import amqp from 'amqplib'
import { describe, it } from 'vitest'

/**
 * The machine's real brokers for the queue suites: NATS with JetStream on
 * 127.0.0.1:4222 and RabbitMQ on 127.0.0.1:5672 (guest/guest). No mocks.
 * A broker that is unreachable skips its suite with a loud message, unless
 * `FILEDGE_TEST_QUEUE_REQUIRED=1` (CI sets it, after starting both), in
 * which case the suite fails. Every test uses a stream or queue of its own,
 * deleted afterwards.
 */

export type BrokerName = 'jetstream' | 'rabbitmq'

export const NATS_SERVER = process.env.FILEDGE_TEST_NATS ?? '127.0.0.1:4222'
export const RABBITMQ_URL = process.env.FILEDGE_TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const REQUIRED = process.env.FILEDGE_TEST_QUEUE_REQUIRED === '1'

/** How each is started on this machine (the CI script's commands). */
const START = {
  jetstream: 'start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log',
  rabbitmq: 'rabbitmq-server -detached',
}

async function probeNats(): Promise<string | undefined> {
  try {
    const nc = await natsConnect({ servers: NATS_SERVER, timeout: 3_000, maxReconnectAttempts: 0 })
    try {
      await (await jetstreamManager(nc)).getAccountInfo()
    } finally {
      await nc.close()
    }
    return undefined
  } catch (error) {
    return (error as Error).message
  }
}

async function probeRabbit(): Promise<string | undefined> {
  try {
    const connection = await amqp.connect(RABBITMQ_URL, { timeout: 3_000 })
    await connection.close()
    return undefined
  } catch (error) {
    return (error as Error).message
  }
}

const unreachable = { jetstream: await probeNats(), rabbitmq: await probeRabbit() }

/** `describe` for a suite that needs a broker: skipped loudly, or failing under FILEDGE_TEST_QUEUE_REQUIRED=1, when it is down. */
export function describeBroker(broker: BrokerName, name: string, body: () => void): void {
  const reason = unreachable[broker]
  if (reason === undefined) {
    describe(name, body)
    return
  }
  const where = broker === 'jetstream' ? `NATS JetStream at ${NATS_SERVER}` : 'RabbitMQ at 127.0.0.1:5672'
  const message = `${where} is unreachable (${reason})`
  if (REQUIRED) {
    describe(name, () => {
      it(`reaches ${where} (FILEDGE_TEST_QUEUE_REQUIRED=1)`, () => {
        throw new Error(`${message}; start it with \`${START[broker]}\``)
      })
    })
    return
  }
  console.warn(`\n${'!'.repeat(78)}\n!! SKIPPING "${name}": ${message}.\n!! Set FILEDGE_TEST_QUEUE_REQUIRED=1 to make this a failure.\n${'!'.repeat(78)}\n`)
  describe.skip(name, body)
}

export interface TestMessage {
  /** The body as published (a string, or raw bytes for a message that is not UTF-8). */
  readonly body: string | Buffer
  /** RabbitMQ's message_id property (absent: none). */
  readonly messageId?: string
}

/** What a test needs of one broker: a fresh stream or queue, publishing into it, and what the broker still holds. */
export interface TestQueue {
  readonly broker: BrokerName
  /** The stream (JetStream) or queue (RabbitMQ) name, unique to the test. */
  readonly name: string
  /** The source's options in a config (`jetstream({ … })` / `rabbitmq({ … })`), without the batch options. */
  readonly sourceOptions: string
  /** Environment the CLI needs (RabbitMQ's URL, a secret). */
  readonly env: NodeJS.ProcessEnv
  publish(messages: readonly TestMessage[]): Promise<void>
  /** Messages the broker still holds for the consumer: not yet delivered, or delivered and not acknowledged. */
  backlog(): Promise<{ ready: number; unacknowledged: number }>
  /** JetStream: deletes the stream and creates it again under the same name (its sequences start at 1 again). */
  recreate?(): Promise<void>
  remove(): Promise<void>
}

const unique = (prefix: string) => `${prefix}_${randomBytes(5).toString('hex')}`

export async function jetstreamQueue(options: { ackWait?: string } = {}): Promise<TestQueue> {
  const name = unique('FILEDGE_T').toUpperCase()
  const consumer = 'filedge'
  const nc = await natsConnect({ servers: NATS_SERVER, maxReconnectAttempts: -1, reconnectTimeWait: 250 })
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({ name, subjects: [`${name}.>`] })
  const js = jetstream(nc)
  const encoder = new TextEncoder()
  let published = 0
  return {
    broker: 'jetstream',
    name,
    sourceOptions: `servers: '${NATS_SERVER}', stream: '${name}', consumer: '${consumer}', subject: '${name}.orders', ackWait: '${options.ackWait ?? '2s'}'`,
    env: {},
    async publish(messages) {
      // A publish sent while the client reconnects can lose its answer: it is sent again with the same Nats-Msg-Id, which the stream deduplicates.
      const one = async (message: TestMessage, index: number) => {
        const data = typeof message.body === 'string' ? encoder.encode(message.body) : message.body
        for (let attempt = 1; ; attempt++) {
          try {
            return await js.publish(`${name}.orders`, data, { msgID: message.messageId ?? `${published + index}`, timeout: 5_000 })
          } catch (error) {
            if (attempt >= 10) throw error
            await new Promise((resolve) => setTimeout(resolve, 200))
          }
        }
      }
      for (let i = 0; i < messages.length; i += 200) await Promise.all(messages.slice(i, i + 200).map((message, j) => one(message, i + j)))
      published += messages.length
    },
    async backlog() {
      const info = await jsm.consumers.info(name, consumer).catch(() => undefined)
      if (info === undefined) return { ready: (await jsm.streams.info(name)).state.messages, unacknowledged: 0 }
      return { ready: info.num_pending, unacknowledged: info.num_ack_pending }
    },
    async recreate() {
      await jsm.streams.delete(name)
      await jsm.streams.add({ name, subjects: [`${name}.>`] })
      published = 0
    },
    async remove() {
      await jsm.streams.delete(name).catch(() => undefined)
      await nc.close()
    },
  }
}

export async function rabbitQueue(): Promise<TestQueue> {
  const name = unique('filedge_t')
  const connection = await amqp.connect(RABBITMQ_URL)
  const channel = await connection.createConfirmChannel()
  await channel.assertQueue(name, { durable: true })
  let current = { connection, channel }
  const reopen = async () => {
    const connection = await amqp.connect(RABBITMQ_URL)
    current = { connection, channel: await connection.createConfirmChannel() }
  }
  return {
    broker: 'rabbitmq',
    name,
    sourceOptions: `url: env('TEST_RABBITMQ_URL'), queue: '${name}'`,
    env: { TEST_RABBITMQ_URL: RABBITMQ_URL },
    async publish(messages) {
      for (let attempt = 0; ; attempt++) {
        try {
          for (let i = 0; i < messages.length; i += 500) {
            for (const message of messages.slice(i, i + 500)) {
              current.channel.sendToQueue(name, Buffer.from(message.body), { persistent: true, ...(message.messageId === undefined ? {} : { messageId: message.messageId }) })
            }
            await current.channel.waitForConfirms()
          }
          return
        } catch (error) {
          // A connection from before a broker restart: publish on a new one (tests publish only while the broker is up).
          if (attempt > 0) throw error
          await reopen()
        }
      }
    },
    async backlog() {
      const probe = await amqp.connect(RABBITMQ_URL)
      try {
        const ch = await probe.createChannel()
        // AMQP tells ready messages only: with no consumer attached (filedge has exited), an unacknowledged one is ready again.
        const { messageCount } = await ch.checkQueue(name)
        return { ready: messageCount, unacknowledged: 0 }
      } finally {
        await probe.close()
      }
    },
    async remove() {
      await current.channel.deleteQueue(name).catch(() => undefined)
      await current.connection.close().catch(() => undefined)
    },
  }
}

function sh(command: string): Promise<string> {
  return new Promise((resolve, reject) => execFile('sh', ['-c', command], { timeout: 120_000 }, (error, stdout, stderr) => (error ? reject(new Error(`${command}: ${stderr || error.message}`)) : resolve(stdout))))
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 90_000): Promise<void> {
  const started = Date.now()
  while (!(await check().catch(() => false))) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Makes sure the broker is up, whatever happened (afterAll of a test that restarts it). */
export async function ensureRunning(broker: BrokerName): Promise<void> {
  if (broker === 'jetstream') {
    if (!(await listening(4222))) await sh(START.jetstream)
    await until(async () => (await probeNats()) === undefined, 'NATS to accept connections')
  } else {
    if ((await probeRabbit()) !== undefined) await sh('rabbitmqctl start_app || rabbitmq-server -detached')
    await until(async () => (await probeRabbit()) === undefined, 'RabbitMQ to accept connections')
  }
}

/**
 * Restarts the broker: NATS by killing its process (SIGKILL: a crash, its
 * store kept on disk) and starting it again; RabbitMQ by stopping and
 * starting its application (the Erlang node stays, so this takes seconds,
 * not a minute). Returns once it accepts connections again.
 */
export async function restartBroker(broker: BrokerName): Promise<void> {
  if (broker === 'jetstream') {
    const pids = execFileSync('sh', ['-c', 'pgrep -x nats-server || true']).toString().trim().split('\n').filter(Boolean)
    for (const pid of pids) process.kill(Number(pid), 'SIGKILL')
    await until(async () => !(await listening(4222)), 'NATS to stop', 10_000)
  } else {
    await sh('rabbitmqctl stop_app')
  }
  await ensureRunning(broker)
}

/** Messages `{ id, n }` for n in [from, from + count), with the RabbitMQ message id `m-<n>`. */
export function orders(count: number, from = 1): TestMessage[] {
  return Array.from({ length: count }, (_, i) => ({ body: JSON.stringify({ id: `o-${from + i}`, n: from + i, note: 'x'.repeat(40) }), messageId: `m-${from + i}` }))
}
