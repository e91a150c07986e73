import { createHash } from 'node:crypto'
import type { ConsumeMessage } from 'amqplib'
import { FiledgeError, readEnv, redact, type Logger } from '../../core/index.js'
import { Wakeup, type Broker, type BrokerSession, type Delivery } from './broker.js'
import type { RabbitMqSettings } from './options.js'

/**
 * RabbitMQ through amqplib (an optional peer, loaded on connect). RabbitMQ
 * has no stable sequence: a delivery tag counts deliveries on one channel
 * and a redelivery gets a new one. A message's identity is therefore its id
 * (the AMQP message_id, a field of the body, or the body's SHA-256; see
 * `messageId`), and a manifest lists the ids of its records.
 *
 * The consumer is exclusive (the broker refuses a second consumer on the
 * queue while it is attached), on top of the ledger's lease: one consumer
 * sees the queue in order and no batch is split with anyone. Unacknowledged
 * messages go back to the queue when the channel closes (a stop, a lost
 * connection, a broker restart); this adapter does not reconnect by itself:
 * the consumer loop opens a new session, abandoning the open batch.
 */
export function rabbitMqBroker(settings: RabbitMqSettings): Broker {
  let url: string | undefined
  /** The URL safe to print: the password as ***. While its environment variable is unset, the variable's name. */
  const shownUrl = () => {
    const text = url ?? readEnv(settings.url)
    if (text === undefined) return String(settings.url)
    try {
      const parsed = new URL(text)
      if (parsed.password !== '') parsed.password = '***'
      return parsed.toString()
    } catch {
      return 'amqp://(an unreadable URL)'
    }
  }
  const describe = () => `rabbitmq ${shownUrl()} queue ${settings.queue}`
  const secrets: string[] = []
  const hide = (text: string) => secrets.reduce((out, secret) => out.split(secret).join('***'), redact(text))
  const failure = (message: string, cause?: unknown) => new FiledgeError('PLUGIN_ERROR', `${describe()}: ${hide(message)}`, { plugin: 'queue', cause })
  const origin: Record<string, unknown> = { queue: settings.queue }

  const identify = (message: ConsumeMessage): { id?: string; problem?: string } => {
    if (settings.messageId === 'content') return { id: createHash('sha256').update(message.content).digest('hex') }
    if (settings.messageId === 'property') {
      const id = message.properties.messageId as unknown
      if (typeof id === 'string' && id !== '') return { id }
      return { problem: "no message id: the message has no message_id property (messageId: 'property'); publish with one, or choose messageId: { field } or 'content'" }
    }
    return {}
  }

  /** Reads the URL (once), loads amqplib and connects. */
  async function connect() {
    if (url === undefined) {
      const resolved = readEnv(settings.url)
      if (resolved === undefined) throw new FiledgeError('CONFIG_INVALID', `rabbitmq: environment variable ${String(settings.url).replace(/^env\((.*)\)$/, '$1')} (url) is not set`, { plugin: 'queue' })
      url = resolved
      const password = (() => {
        try {
          return decodeURIComponent(new URL(resolved).password)
        } catch {
          return ''
        }
      })()
      if (password.length >= 4) secrets.push(password)
      origin.url = shownUrl()
    }
    const amqp = await import('amqplib').catch((error: unknown) => {
      throw failure('the RabbitMQ client is not installed: npm install amqplib', error)
    })
    return amqp.connect(url, { clientProperties: { connection_name: `filedge ${settings.queue}` } }).catch((error: Error) => {
      throw failure(`cannot connect (${error.message})`, error)
    })
  }

  return {
    kind: 'rabbitmq',
    identity: 'id',
    describe,
    hide,
    origin,

    async probe(): Promise<void> {
      const connection = await connect()
      try {
        const channel = await connection.createChannel()
        channel.on('error', () => undefined)
        await channel.checkQueue(settings.queue).catch((error: Error) => {
          throw failure(`the queue ${settings.queue} does not exist or cannot be read (${error.message})`, error)
        })
      } finally {
        await connection.close().catch(() => undefined)
      }
    },

    async open(logger: Logger): Promise<BrokerSession> {
      const connection = await connect()
      let broken: Error | undefined
      const wakeup = new Wakeup()
      const lost = (error?: Error) => {
        broken ??= error ?? new Error('the connection to RabbitMQ closed')
        wakeup.wake()
      }
      connection.on('error', (error: Error) => lost(error))
      connection.on('close', () => lost())
      try {
        const channel = await connection.createChannel()
        channel.on('error', (error: Error) => lost(error))
        channel.on('close', () => lost(new Error('the channel closed')))
        await channel.checkQueue(settings.queue).catch((error: Error) => {
          throw failure(`the queue ${settings.queue} does not exist or cannot be read (${error.message}); declare it first (durable, to survive a restart)`, error)
        })
        await channel.prefetch(settings.prefetch)
        const queue: ConsumeMessage[] = []
        const held = new WeakMap<Delivery, ConsumeMessage>()
        await channel
          .consume(
            settings.queue,
            (message) => {
              if (message === null) {
                lost(new Error(`the queue ${settings.queue} was deleted`))
                return
              }
              queue.push(message)
              wakeup.wake()
            },
            { noAck: false, exclusive: true },
          )
          .catch((error: Error) => {
            throw failure(
              /ACCESS_REFUSED|exclusive/i.test(error.message)
                ? `another consumer is attached to the queue (${error.message}); filedge consumes it alone, so that no batch is split`
                : error.message,
              error,
            )
          })
        logger.debug(`${describe()}: consuming (prefetch ${settings.prefetch})`)
        // A channel-level check that the queue exists, on a channel of its own: one failing closes its channel, not ours.
        const checks = await connection.createChannel()
        checks.on('error', () => undefined)

        return {
          maxHeld: settings.prefetch,
          redeliverAfterMs: 0,
          async next(until, signal) {
            for (;;) {
              const message = queue.shift()
              if (message !== undefined) {
                const d: Delivery = { ...identify(message), data: message.content, redelivered: message.fields.redelivered, subject: message.fields.routingKey }
                held.set(d, message)
                return d
              }
              if (broken !== undefined) throw broken
              const wait = until - Date.now()
              if (wait <= 0 || signal.aborted) return undefined
              await wakeup.wait(until, signal)
            }
          },
          async ack(deliveries) {
            if (broken !== undefined) throw broken
            for (const d of deliveries) channel.ack(held.get(d)!)
          },
          async abandon() {
            // Closing the channel hands back every message it holds unacknowledged, in their places in the queue.
            await channel.close().catch(() => undefined)
          },
          async backlog() {
            const { messageCount } = await checks.checkQueue(settings.queue)
            return { ready: messageCount + queue.length, waiting: 0 }
          },
          async close() {
            // Closing the channel hands back what it holds and nobody took (the client's buffer).
            await channel.close().catch(() => undefined)
            await connection.close().catch(() => undefined)
          },
        }
      } catch (error) {
        await connection.close().catch(() => undefined)
        throw error
      }
    },
  }
}
