import { FiledgeError, isEnvRef, toBytes, toMs, type Duration, type MaybeEnv, type Size } from '../../core/index.js'

/** How a batch closes and where its files go: the same for every broker. */
export interface BatchOptions {
  /** A batch closes at this many messages (records and dead letters). Default 10,000. */
  maxRecords?: number
  /** A batch closes once its messages hold this many bytes (before gzip). Default `'16MiB'`. */
  maxBytes?: Size
  /** A batch closes this long after its first message arrived, full or not. Default `'1s'`. */
  maxWait?: Duration
  /** A message over this size is dead-lettered (`too large`), never written into a data file. Default `'1MiB'`. */
  maxMessageBytes?: Size
  /** The source's id: its lease and cursor in the ledger, its folder. Default: the pipeline's name. */
  name?: string
  /** Where promoted files, manifests and dead letters go, relative to the project root. Default `.filedge/queue/<name>`. */
  dir?: string
  /** Write `.ndjson.gz` (default) or plain `.ndjson` files. */
  gzip?: boolean
  /**
   * `filedge` (a run) keeps consuming until the broker has nothing left for
   * it; a broker that is down or restarting is tried again for this long
   * before the run fails. Default `'30s'`. A watcher tries forever.
   */
  reconnect?: Duration
}

export interface JetStreamOptions extends BatchOptions {
  /** `'127.0.0.1:4222'`, `'nats://nats.internal:4222'`, or several. Credentials go in `user`/`pass` or `token`, with env(). */
  servers: string | readonly string[]
  /** The stream to read. */
  stream: string
  /**
   * The durable pull consumer filedge reads with (explicit acks). Created if
   * it does not exist (delivering the whole stream, or `subject`'s part of it);
   * an existing one is used as it is configured.
   */
  consumer: string
  /** Only this subject (wildcards allowed) of the stream: the filter of a consumer filedge creates; an existing consumer must filter the same. */
  subject?: string
  /** The ack wait of a consumer filedge creates: a message delivered and not acknowledged for this long is delivered again. Default `'30s'`. */
  ackWait?: Duration
  user?: MaybeEnv
  pass?: MaybeEnv
  token?: MaybeEnv
}

/** Where a RabbitMQ message's identity comes from (see docs/queues.md, "RabbitMQ: identity"). */
export type MessageIdFrom =
  /** The AMQP `message_id` property (the default): a message without one is dead-lettered. */
  | 'property'
  /** A top-level field of the JSON body, `{ field: 'id' }`: a message without it is dead-lettered. */
  | { readonly field: string }
  /** The SHA-256 of the body: two messages with the same bytes are one message when redelivered. */
  | 'content'

export interface RabbitMqOptions extends BatchOptions {
  /** `env('RABBITMQ_URL')` (`amqp://user:password@host:5672/vhost`). A URL with a password written into the config is refused. */
  url: MaybeEnv
  /** The queue to consume; it must exist (declare it durable, with persistent messages, to survive a broker restart). */
  queue: string
  /** Messages the broker sends ahead of their ack; a batch also closes when it holds this many. Default: `maxRecords`. */
  prefetch?: number
  /** Where each message's identity comes from. Default `'property'` (the AMQP message_id). */
  messageId?: MessageIdFrom
}

/** The batch options, checked, with their defaults. */
export interface BatchSettings {
  readonly maxRecords: number
  readonly maxBytes: number
  readonly maxWaitMs: number
  readonly maxMessageBytes: number
  readonly name?: string
  readonly dir?: string
  readonly gzip: boolean
  readonly reconnectMs: number
}

export interface JetStreamSettings extends BatchSettings {
  readonly servers: readonly string[]
  readonly stream: string
  readonly consumer: string
  readonly subject?: string
  readonly ackWaitMs: number
  readonly user?: MaybeEnv
  readonly pass?: MaybeEnv
  readonly token?: MaybeEnv
}

export interface RabbitMqSettings extends BatchSettings {
  readonly url: MaybeEnv
  readonly queue: string
  readonly prefetch: number
  readonly messageId: 'property' | 'content' | { readonly field: string }
}

const BATCH_KEYS = ['maxRecords', 'maxBytes', 'maxWait', 'maxMessageBytes', 'name', 'dir', 'gzip', 'reconnect']
const JETSTREAM_KEYS = [...BATCH_KEYS, 'servers', 'stream', 'consumer', 'subject', 'ackWait', 'user', 'pass', 'token']
const RABBITMQ_KEYS = [...BATCH_KEYS, 'url', 'queue', 'prefetch', 'messageId']

function shown(value: unknown): string {
  return (isEnvRef(value) ? String(value) : JSON.stringify(value)) ?? String(value)
}

function checker(broker: string) {
  const invalid = (message: string) => new FiledgeError('CONFIG_INVALID', `${broker}.${message}`, { plugin: 'queue' })
  return {
    invalid,
    known(options: object, keys: readonly string[]) {
      for (const key of Object.keys(options)) if (!keys.includes(key)) throw invalid(`${key}: unknown option (expected one of ${keys.join(', ')})`)
    },
    name(key: string, value: unknown): string {
      if (typeof value !== 'string' || value.trim() === '') throw invalid(`${key}: expected a non-empty name; got ${shown(value)}`)
      return value
    },
    whole(key: string, value: unknown, fallback: number): number {
      if (value === undefined) return fallback
      if (!Number.isSafeInteger(value) || (value as number) < 1) throw invalid(`${key}: expected a whole number ≥ 1; got ${shown(value)}`)
      return value as number
    },
    duration(key: string, value: unknown, fallback: Duration): number {
      try {
        const ms = toMs((value ?? fallback) as Duration)
        if (!(ms > 0)) throw new Error('not positive')
        return ms
      } catch {
        throw invalid(`${key}: expected a duration such as '1s' or '200ms'; got ${shown(value)}`)
      }
    },
    size(key: string, value: unknown, fallback: Size): number {
      try {
        const bytes = toBytes((value ?? fallback) as Size)
        if (!(bytes >= 1)) throw new Error('not positive')
        return bytes
      } catch {
        throw invalid(`${key}: expected a size such as '16MiB' or a number of bytes; got ${shown(value)}`)
      }
    },
    secret(key: string, value: unknown): MaybeEnv | undefined {
      if (value === undefined) return undefined
      if (!isEnvRef(value)) throw invalid(`${key}: a credential is given with env('NAME'), never written into the config`)
      return value
    },
  }
}

function batchSettings(broker: string, options: BatchOptions): BatchSettings {
  const check = checker(broker)
  if (options.gzip !== undefined && typeof options.gzip !== 'boolean') throw check.invalid(`gzip: expected true or false; got ${shown(options.gzip)}`)
  const name = options.name === undefined ? undefined : check.name('name', options.name)
  const dir = options.dir === undefined ? undefined : check.name('dir', options.dir)
  return {
    maxRecords: check.whole('maxRecords', options.maxRecords, 10_000),
    maxBytes: check.size('maxBytes', options.maxBytes, '16MiB'),
    maxWaitMs: check.duration('maxWait', options.maxWait, '1s'),
    maxMessageBytes: check.size('maxMessageBytes', options.maxMessageBytes, '1MiB'),
    ...(name === undefined ? {} : { name }),
    ...(dir === undefined ? {} : { dir }),
    gzip: options.gzip ?? true,
    reconnectMs: check.duration('reconnect', options.reconnect, '30s'),
  }
}

/** Every option checked when the config loads, so a typo fails before any connection. */
export function checkJetStream(options: JetStreamOptions): JetStreamSettings {
  const check = checker('jetstream')
  if (typeof options !== 'object' || options === null) throw check.invalid(`: expected options ({ servers, stream, consumer }); got ${shown(options)}`)
  check.known(options, JETSTREAM_KEYS)
  const servers = typeof options.servers === 'string' ? [options.servers] : options.servers
  if (!Array.isArray(servers) || servers.length === 0 || servers.some((server) => typeof server !== 'string' || server.trim() === '')) {
    throw check.invalid(`servers: expected a server such as '127.0.0.1:4222' or a list of them; got ${shown(options.servers)}`)
  }
  for (const server of servers) {
    if (/^[a-z]+:\/\/[^/@]*@/i.test(server)) throw check.invalid("servers: credentials in a server URL would be written to manifests and messages; give them with user/pass or token and env('NAME')")
  }
  const subject = options.subject === undefined ? undefined : check.name('subject', options.subject)
  const settings: JetStreamSettings = {
    ...batchSettings('jetstream', options),
    servers,
    stream: check.name('stream', options.stream),
    consumer: check.name('consumer', options.consumer),
    ...(subject === undefined ? {} : { subject }),
    ackWaitMs: check.duration('ackWait', options.ackWait, '30s'),
    ...secrets(check, options, ['user', 'pass', 'token']),
  }
  if (/[.*>\s]/.test(settings.consumer)) throw check.invalid(`consumer: a durable name cannot hold '.', '*', '>' or spaces; got ${shown(settings.consumer)}`)
  // A batch must be acknowledged well before the broker gives its messages to someone else.
  if (settings.maxWaitMs * 2 > settings.ackWaitMs) throw check.invalid(`maxWait: a batch stays open up to maxWait (${settings.maxWaitMs} ms) before it is promoted and acknowledged; it must be under half of ackWait (${settings.ackWaitMs} ms)`)
  return settings
}

export function checkRabbitMq(options: RabbitMqOptions): RabbitMqSettings {
  const check = checker('rabbitmq')
  if (typeof options !== 'object' || options === null) throw check.invalid(`: expected options ({ url, queue }); got ${shown(options)}`)
  check.known(options, RABBITMQ_KEYS)
  const url = options.url
  if (isEnvRef(url)) {
    // Read when the source connects.
  } else if (typeof url !== 'string' || !/^amqps?:\/\//.test(url)) {
    throw check.invalid(`url: expected env('RABBITMQ_URL') or an amqp:// URL without a password; got ${shown(url)}`)
  } else if (/^amqps?:\/\/[^/@]*:[^/@]*@/.test(url)) {
    throw check.invalid("url: a password written into the config would end up in version control; give the URL with env('RABBITMQ_URL')")
  }
  const batch = batchSettings('rabbitmq', options)
  const messageId = options.messageId ?? 'property'
  if (!(messageId === 'property' || messageId === 'content' || (typeof messageId === 'object' && messageId !== null && typeof messageId.field === 'string' && messageId.field !== '' && Object.keys(messageId).length === 1))) {
    throw check.invalid(`messageId: expected 'property', 'content' or { field: 'id' }; got ${shown(messageId)}`)
  }
  // AMQP's basic.qos counts in 16 bits.
  if (options.prefetch !== undefined && (options.prefetch as number) > 65_535) throw check.invalid(`prefetch: at most 65535 (AMQP's limit); got ${shown(options.prefetch)}`)
  return {
    ...batch,
    url,
    queue: check.name('queue', options.queue),
    prefetch: check.whole('prefetch', options.prefetch, Math.min(batch.maxRecords, 65_535)),
    messageId,
  }
}

function secrets<K extends string>(check: ReturnType<typeof checker>, options: Partial<Record<K, unknown>>, keys: readonly K[]): Partial<Record<K, MaybeEnv>> {
  const out: Partial<Record<K, MaybeEnv>> = {}
  for (const key of keys) {
    const value = key === 'user' ? (options[key] === undefined || typeof options[key] === 'string' || isEnvRef(options[key]) ? (options[key] as MaybeEnv | undefined) : undefined) : check.secret(key, options[key])
    if (key === 'user' && options[key] !== undefined && value === undefined) throw check.invalid(`user: expected a string or env('NAME'); got ${shown(options[key])}`)
    if (value !== undefined) out[key] = value
  }
  return out
}
