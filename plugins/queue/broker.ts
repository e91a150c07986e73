import type { Logger } from '../../core/index.js'

/**
 * What the queue source needs of a broker: small, so a Kafka adapter is a
 * file like jetstream.ts (a partition's offsets are sequences).
 *
 * A message's identity is either a **sequence** (JetStream's stream
 * sequence, a Kafka offset: numbers in the order of the log, the same on
 * every delivery) or an **id** (RabbitMQ has no stable sequence, so the
 * message id, or the body's SHA-256). Identities are what a manifest records
 * and what a redelivery is recognised by.
 */
export type Identity = 'sequence' | 'id'

export interface Delivery {
  /** The stream sequence (identity `sequence`). */
  readonly seq?: number
  /** The message id (identity `id`); absent when the message has none (then `problem` says so). */
  readonly id?: string
  readonly data: Uint8Array
  /** The broker says it delivered this message before (to us or to a process that stopped). */
  readonly redelivered: boolean
  /** JetStream's subject, RabbitMQ's routing key: for dead letters. */
  readonly subject?: string
  /** Why the adapter cannot take the message whatever its body (no message id): it is dead-lettered. */
  readonly problem?: string
}

export interface BrokerSession {
  /**
   * The next delivery, or undefined when none arrived by `until` (ms since
   * the epoch) or the signal aborted. Rejects when the connection is lost.
   */
  next(until: number, signal: AbortSignal): Promise<Delivery | undefined>
  /** Acknowledges deliveries of this session (their messages are promoted, or were already). Resolves once the broker has been sent them. */
  ack(deliveries: readonly Delivery[]): Promise<void>
  /**
   * Stops consuming, then hands these deliveries back for redelivery at once,
   * with anything delivered and not yet taken (a batch abandoned on stop);
   * only `close` follows. Best effort: a lost session's messages come back
   * anyway, later. Stopping first matters: a message handed back while a pull
   * is still open is delivered straight into it again, to a process on its way out.
   */
  abandon(deliveries: readonly Delivery[]): Promise<void>
  /**
   * Whether the broker holds nothing more for this consumer beyond `held`
   * messages delivered in this session and not yet acknowledged. `waiting`:
   * messages delivered to a consumer that stopped, which the broker will
   * deliver again (JetStream after the ack wait).
   */
  backlog(held: number): Promise<{ readonly ready: number; readonly waiting: number }>
  /** Deliveries the broker hands out before it wants acknowledgements (prefetch, max ack pending): a batch closes at this many. */
  readonly maxHeld: number
  /** How long the broker waits before it delivers again what a stopped consumer held (JetStream's ack wait; 0 when it does at once). */
  readonly redeliverAfterMs: number
  /**
   * Which incarnation of the log the sequences count in (JetStream: when the
   * stream was created). A stream deleted and created again under the same
   * name numbers its messages from 1 again: sequences of another epoch are
   * other messages, and must not be taken for promoted ones. Absent for ids.
   */
  readonly epoch?: string
  close(): Promise<void>
}

export interface Broker {
  readonly kind: 'jetstream' | 'rabbitmq'
  readonly identity: Identity
  /** Safe to print: `jetstream nats://127.0.0.1:4222 stream ORDERS consumer filedge`. */
  describe(): string
  /** What every manifest of this source records about where its messages came from (no secret). */
  readonly origin: Readonly<Record<string, unknown>>
  /** Connects (reading env() credentials) and starts consuming. */
  open(logger: Logger): Promise<BrokerSession>
  /** Connects, checks that the stream (and consumer) or queue is there, and disconnects: consumes nothing, changes nothing (healthcheck). */
  probe(): Promise<void>
  /** Blanks the source's secrets out of a broker's error message. */
  hide(text: string): string
}

/**
 * One waiter for the next delivery (a session's `next`): `wait` resolves when
 * `wake` is called (a message arrived, the connection broke), at `until` (ms
 * since the epoch), or when `signal` aborts, whichever comes first.
 */
export class Wakeup {
  private waiting: (() => void) | undefined

  wake(): void {
    this.waiting?.()
  }

  wait(until: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        this.waiting = undefined
        resolve()
      }
      const timer = setTimeout(done, until - Date.now())
      signal.addEventListener('abort', done, { once: true })
      this.waiting = done
    })
  }
}
