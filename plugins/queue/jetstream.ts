import type { ConsumerInfo, JsMsg } from '@nats-io/jetstream'
import { FiledgeError, readEnv, redact, type Logger, type MaybeEnv } from '../../core/index.js'
import { Wakeup, type Broker, type BrokerSession, type Delivery } from './broker.js'
import type { JetStreamSettings } from './options.js'

/**
 * NATS JetStream through a durable pull consumer with explicit acks. A
 * message's identity is its stream sequence: the same on every delivery, so
 * a batch is a set of sequences (ranges in its manifest) and its file lists
 * its records in stream order.
 *
 * `@nats-io/transport-node` and `@nats-io/jetstream` are loaded on connect
 * only (optional peers: install them next to filedge). The client reconnects
 * by itself; acks sent while it does are buffered and sent once it is back,
 * and any the server never saw are recognised when their messages come again.
 */
/** How long one pull request waits at the server (the client's minimum is 1 s). */
const PULL_EXPIRES_MS = 2_000

export function jetstreamBroker(settings: JetStreamSettings): Broker {
  const servers = settings.servers.map((server) => (/^[a-z]+:\/\//i.test(server) ? server : `nats://${server}`))
  const describe = () => `jetstream ${servers.join(',')} stream ${settings.stream} consumer ${settings.consumer}${settings.subject === undefined ? '' : ` subject ${settings.subject}`}`
  const secrets: string[] = []
  const hide = (text: string) => secrets.reduce((out, secret) => out.split(secret).join('***'), redact(text))
  const failure = (message: string, cause?: unknown) => new FiledgeError('PLUGIN_ERROR', `${describe()}: ${hide(message)}`, { plugin: 'queue', cause })
  const read = (key: string, value: MaybeEnv | undefined): string | undefined => {
    if (value === undefined) return undefined
    const resolved = readEnv(value)
    if (resolved === undefined) throw new FiledgeError('CONFIG_INVALID', `${describe()}: environment variable ${String(value).replace(/^env\((.*)\)$/, '$1')} (${key}) is not set`, { plugin: 'queue' })
    if (key !== 'user' && resolved.length >= 4 && !secrets.includes(resolved)) secrets.push(resolved)
    return resolved
  }

  /** A connection (`reconnects`: -1 forever, as a consumer; 0 for a probe) and the JetStream module. */
  async function connect(reconnects: number) {
    const [nats, js] = await Promise.all([import('@nats-io/transport-node'), import('@nats-io/jetstream')]).catch((error: unknown) => {
      throw failure('the NATS client is not installed: npm install @nats-io/transport-node @nats-io/jetstream', error)
    })
    const user = read('user', settings.user)
    const pass = read('pass', settings.pass)
    const token = read('token', settings.token)
    const nc = await nats
      .connect({
        servers,
        name: `filedge ${settings.consumer}`,
        ...(user === undefined ? {} : { user }),
        ...(pass === undefined ? {} : { pass }),
        ...(token === undefined ? {} : { token }),
        maxReconnectAttempts: reconnects,
        reconnectTimeWait: 250,
        timeout: 5_000,
      })
      .catch((error: Error) => {
        throw failure(`cannot connect (${error.message})`, error)
      })
    return { nc, js }
  }

  return {
    kind: 'jetstream',
    identity: 'sequence',
    describe,
    hide,
    origin: { servers, stream: settings.stream, consumer: settings.consumer, ...(settings.subject === undefined ? {} : { subject: settings.subject }) },

    async probe(): Promise<void> {
      const { nc, js } = await connect(0)
      try {
        const jsm = await js.jetstreamManager(nc)
        await jsm.streams.info(settings.stream).catch((error: Error) => {
          throw failure(`the stream ${settings.stream} does not exist or cannot be read (${error.message})`, error)
        })
        await jsm.consumers.info(settings.stream, settings.consumer).catch((error: Error) => {
          // A consumer filedge has not created yet is created on the first run: not a failure.
          if (!/consumer not found/i.test(error.message)) throw failure(error.message, error)
        })
      } finally {
        await nc.close().catch(() => undefined)
      }
    },

    async open(logger: Logger): Promise<BrokerSession> {
      const { nc, js } = await connect(-1)
      try {
        const jsm = await js.jetstreamManager(nc)
        const stream = await jsm.streams.info(settings.stream).catch((error: Error) => {
          throw failure(`the stream ${settings.stream} does not exist or cannot be read (${error.message}); create it first (nats stream add)`, error)
        })
        let info: ConsumerInfo | undefined = await jsm.consumers.info(settings.stream, settings.consumer).catch((error: Error) => {
          if (/consumer not found/i.test(error.message)) return undefined
          throw error
        })
        if (info === undefined) {
          info = await jsm.consumers.add(settings.stream, {
            durable_name: settings.consumer,
            ack_policy: js.AckPolicy.Explicit,
            deliver_policy: js.DeliverPolicy.All,
            ack_wait: settings.ackWaitMs * 1_000_000,
            max_ack_pending: Math.max(1_000, settings.maxRecords * 2),
            ...(settings.subject === undefined ? {} : { filter_subject: settings.subject }),
          })
          logger.info(`${describe()}: created the durable consumer (explicit acks, ack wait ${settings.ackWaitMs} ms, from the start of the stream)`)
        } else {
          const config = info.config
          if (config.deliver_subject !== undefined && config.deliver_subject !== '') throw failure('is a push consumer; filedge reads with a pull consumer (no deliver_subject)')
          if (config.ack_policy === js.AckPolicy.None) throw failure('acknowledges nothing (ack_policy none): filedge acknowledges a message only once it is in a promoted file')
          if (settings.subject !== undefined && (config.filter_subject ?? '') !== settings.subject) throw failure(`filters ${JSON.stringify(config.filter_subject ?? '')}, not the subject ${JSON.stringify(settings.subject)} this source names`)
          const ackWaitMs = (config.ack_wait ?? 30e9) / 1_000_000
          if (ackWaitMs < settings.maxWaitMs * 2) logger.warn(`${describe()}: its ack wait (${ackWaitMs} ms) is under twice maxWait (${settings.maxWaitMs} ms): messages may be delivered again while their batch is open (they are written once)`)
        }
        // The server's defaults when the consumer leaves them out: 30 s, and 1,000 (-1: unlimited).
        const ackWaitMs = (info.config.ack_wait ?? 30e9) / 1_000_000
        const maxAckPending = (info.config.max_ack_pending ?? 1_000) > 0 ? (info.config.max_ack_pending ?? 1_000) : Number.POSITIVE_INFINITY
        const consumer = await js.jetstream(nc).consumers.get(settings.stream, settings.consumer)
        const pull = Math.max(1, Math.min(settings.maxRecords, maxAckPending, 1_000))
        // Pulls that expire soon: a pull a stopped process left open at the server takes what is delivered until it expires.
        const messages = await consumer.consume({ max_messages: pull, expires: PULL_EXPIRES_MS })
        return session(nc, messages, jsm, ackWaitMs, maxAckPending, stream.created)
      } catch (error) {
        await nc.close().catch(() => undefined)
        throw error
      }
    },
  }

  function session(
    nc: { flush(): Promise<void>; close(): Promise<void> },
    messages: AsyncIterable<JsMsg> & { close(): Promise<void | Error> },
    jsm: { consumers: { info(stream: string, consumer: string): Promise<ConsumerInfo> } },
    ackWaitMs: number,
    maxHeld: number,
    epoch: string,
  ): BrokerSession {
    const queue: JsMsg[] = []
    const held = new WeakMap<Delivery, JsMsg>()
    let outstanding = 0
    let broken: Error | undefined
    const wakeup = new Wakeup()
    let closed = false
    void (async () => {
      try {
        for await (const message of messages) {
          outstanding++
          queue.push(message)
          wakeup.wake()
        }
        if (!closed) broken = new Error('the consumer stopped delivering')
      } catch (error) {
        broken = error as Error
      }
      wakeup.wake()
    })()

    const delivery = (message: JsMsg): Delivery => {
      const d: Delivery = { seq: message.seq, data: message.data, redelivered: message.info.redelivered, subject: message.subject }
      held.set(d, message)
      return d
    }

    return {
      maxHeld,
      redeliverAfterMs: ackWaitMs,
      epoch,
      async next(until, signal) {
        for (;;) {
          const message = queue.shift()
          if (message !== undefined) return delivery(message)
          if (broken !== undefined) throw broken
          const wait = until - Date.now()
          if (wait <= 0 || signal.aborted) return undefined
          await wakeup.wait(until, signal)
        }
      },
      async ack(deliveries) {
        for (const d of deliveries) {
          held.get(d)?.ack()
          outstanding--
        }
        if (deliveries.length > 0) await nc.flush()
      },
      async abandon(deliveries) {
        closed = true
        await messages.close().catch(() => undefined)
        // The server keeps the pull this session left open until it expires, and would deliver into it what is handed back
        // now (NATS 2.9 does not check that anyone still listens): handed back to be delivered once that pull has expired.
        for (const d of deliveries) held.get(d)?.nak(PULL_EXPIRES_MS + 500)
        for (const message of queue.splice(0)) message.nak(PULL_EXPIRES_MS + 500)
        outstanding = 0
        await nc.flush()
      },
      async backlog() {
        const info = await jsm.consumers.info(settings.stream, settings.consumer)
        // Delivered and not acknowledged, beyond what this session holds (its batch and the client's buffer): a stopped consumer's.
        return { ready: info.num_pending + queue.length, waiting: Math.max(0, info.num_ack_pending - outstanding) }
      },
      async close() {
        closed = true
        await messages.close().catch(() => undefined)
        // What the client pulled and nobody took goes back soon rather than after the ack wait (see abandon).
        for (const message of queue.splice(0)) message.nak(PULL_EXPIRES_MS + 500)
        await nc.close().catch(() => undefined)
      },
    }
  }
}
