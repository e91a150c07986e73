import path from 'node:path'
import {
  FiledgeError,
  createMutex,
  describeError,
  localSource,
  sleep,
  type FileOrigin,
  type ListOptions,
  type Source,
  type SourceContext,
  type SourceEntry,
  type WatchOptions,
  type Watching,
} from '../../core/index.js'
import type { Broker } from './broker.js'
import { createConsumer, type ConsumeReport, type Consumer } from './consumer.js'
import { createFolder, manifestOf, MANIFEST, type Folder } from './folder.js'
import { jetstreamBroker } from './jetstream.js'
import { checkJetStream, checkRabbitMq, type BatchSettings, type JetStreamOptions, type RabbitMqOptions } from './options.js'
import { rabbitMqBroker } from './rabbitmq.js'

export type { BatchOptions, JetStreamOptions, MessageIdFrom, RabbitMqOptions } from './options.js'
export type { ConsumeReport } from './consumer.js'
export type { Manifest } from './folder.js'
export type { DeadLetter } from './batch.js'
export type { Broker, BrokerSession, Delivery, Identity } from './broker.js'

/** A queue source: a `Source`, plus the consuming itself (what `list` does in a run). */
export interface QueueSource extends Source {
  /** Consumes under the source's lease until the broker holds nothing more (or the signal), promoting and acknowledging batch by batch. Never throws for the broker's sake: a failure is the report's `error`. */
  consumeNow(options: { readonly signal: AbortSignal; onPromoted?(file: string): void }): Promise<ConsumeReport>
}

interface Connected {
  readonly consumer: Consumer
  readonly folder: Folder
  readonly files: Source
  readonly context: SourceContext
}

/**
 * NATS JetStream as a source: a durable pull consumer's messages in batches,
 * each batch one NDJSON file with a manifest of its stream sequences,
 * acknowledged once the file is promoted. See docs/queues.md.
 */
export function jetstream(options: JetStreamOptions): QueueSource {
  const settings = checkJetStream(options)
  return queueSource(jetstreamBroker(settings), settings, {})
}

/**
 * A RabbitMQ queue as a source: its messages in batches, each batch one
 * NDJSON file with a manifest of its message ids, acknowledged once the file
 * is promoted. See docs/queues.md.
 */
export function rabbitmq(options: RabbitMqOptions): QueueSource {
  const settings = checkRabbitMq(options)
  return queueSource(rabbitMqBroker(settings), settings, typeof settings.messageId === 'object' ? { idField: settings.messageId.field } : {})
}

/**
 * The source around a broker: consuming promotes files into a folder of the
 * project (`.filedge/queue/<name>`), which the pipeline loads like any other
 * folder: hashed, claimed, committed once, each row with its
 * `_source_file_hash`, and the file's manifest naming its messages
 * (`filedge lineage`).
 *
 * A run (`list`) consumes until the broker has nothing more, handing each
 * file to the pipeline as it is promoted, so loading overlaps consuming. A
 * watcher (`watch`) consumes until it stops. One process consumes a source
 * at a time (the ledger's lease `queue:<name>`); another one lists what it
 * promoted, and takes over when its lease expires.
 */
export function queueSource(broker: Broker, settings: BatchSettings, classifier: { readonly idField?: string }): QueueSource {
  let connected: Connected | undefined
  let watching = false
  const consuming = createMutex()
  const use = (): Connected => {
    if (connected === undefined) throw new FiledgeError('INTERNAL', `${broker.describe()}: used before connect()`, { plugin: 'queue' })
    return connected
  }

  /** Data files with their manifests, as the local source lists them. */
  async function* promoted({ signal, warn }: ListOptions): AsyncGenerator<SourceEntry> {
    const { files, folder } = use()
    const complete = await folder.promoted()
    for await (const entry of files.list({ signal, warn })) {
      if (complete.has(path.posix.basename(entry.path))) yield entry
    }
  }

  const consumeNow: QueueSource['consumeNow'] = ({ signal, onPromoted }) => consuming.run(() => use().consumer.consume({ signal, drain: true, onPromoted: onPromoted ?? (() => undefined) }))

  const summary = (report: ConsumeReport) =>
    `${report.batches} batch${report.batches === 1 ? '' : 'es'}, ${report.records} record${report.records === 1 ? '' : 's'}${report.deadLetters === 0 ? '' : `, ${report.deadLetters} dead-lettered`}${report.redelivered === 0 ? '' : `, ${report.redelivered} already promoted (acknowledged again)`}`

  return {
    name: 'queue',
    describe: () => broker.describe(),
    consumeNow,

    async connect(context: SourceContext) {
      const { ledger, worker, config } = context
      if (ledger === undefined || worker === undefined) {
        throw new FiledgeError('INTERNAL', `${broker.describe()}: connect() needs the run's ledger and worker id (SourceContext.ledger, .worker)`, { plugin: 'queue' })
      }
      const pipelines = context.pipelines ?? []
      const id = settings.name ?? (pipelines.length === 1 ? pipelines[0] : undefined)
      if (id === undefined) {
        throw new FiledgeError('CONFIG_INVALID', `${broker.describe()}: serves pipelines ${pipelines.join(', ') || '(none)'}; give it a name (name: '…'), which keys its lease, its cursor and its folder`, { plugin: 'queue' })
      }
      const folderName = id.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\./, '_')
      const dir = path.resolve(config.root, settings.dir ?? path.join('.filedge', 'queue', folderName))
      const folder = createFolder(dir, settings.gzip)
      await folder.prepare()
      const consumer = createConsumer({
        id,
        broker,
        settings,
        classifier: { identity: broker.identity, maxMessageBytes: settings.maxMessageBytes, ...classifier },
        folder,
        root: config.root,
        ledger,
        worker,
        leaseTtlMs: config.lease.ttlMs,
        heartbeatMs: config.lease.heartbeatMs,
        logger: context.logger,
      })
      const files = localSource({ dir, root: config.root, include: ['*.ndjson', '*.ndjson.gz'], exclude: [], followSymlinks: 'inside' })
      connected = { consumer, folder, files, context }
    },

    /**
     * Lists what is promoted already, then consumes until the broker has
     * nothing more, listing each file as it is promoted; then says why the
     * consuming failed, if it did (the files listed before still load). In a
     * watcher, only lists what is promoted: the watcher consumes.
     */
    async *list(listOptions: ListOptions) {
      const listed = new Set<string>()
      for await (const entry of promoted(listOptions)) {
        listed.add(entry.path)
        yield entry
      }
      if (watching || listOptions.signal.aborted) return
      const { files, context } = use()
      const arrived: string[] = []
      let wake: (() => void) | undefined
      let done = false
      const run = consumeNow({
        signal: listOptions.signal,
        onPromoted: (file) => {
          arrived.push(file)
          wake?.()
        },
      }).finally(() => {
        done = true
        wake?.()
      })
      for (;;) {
        const file = arrived.shift()
        if (file !== undefined) {
          if (listed.has(file)) continue
          listed.add(file)
          const entry = await files.stat!(file)
          if (entry !== undefined) yield entry
          continue
        }
        if (done) break
        await new Promise<void>((resolve) => (wake = resolve))
        wake = undefined
      }
      const report = await run
      if (report.status === 'busy') context.logger.info(`${broker.describe()}: another process is consuming it; listing what is promoted`)
      else if (report.batches > 0 || report.redelivered > 0) context.logger.info(`${broker.describe()}: ${summary(report)}`)
      if (report.error !== undefined && !(listOptions.signal.aborted && report.error.code === 'STOPPED')) throw report.error
    },

    /**
     * Consumes until the watcher stops, reporting each promoted file. While
     * another process holds the lease, lists what it promotes every
     * `watch.poll` and tries the lease again.
     */
    async watch({ signal, onEntry, warn }: WatchOptions): Promise<Watching> {
      watching = true
      const { files, context } = use()
      const stop = new AbortController()
      const both = AbortSignal.any([signal, stop.signal])
      const seen = new Set<string>()
      const report = async (file: string) => {
        if (seen.has(file)) return
        seen.add(file)
        const entry = await files.stat!(file)
        if (entry !== undefined) onEntry(entry)
      }
      for await (const entry of promoted({ signal, warn })) seen.add(entry.path)
      const loop = (async () => {
        let busy = false
        while (!both.aborted) {
          // A ledger that fails to answer (taking the lease) is said, and tried again next poll: the watcher goes on.
          const outcome = await consuming
            .run(() => use().consumer.consume({ signal: both, drain: false, onPromoted: (file) => void report(file).catch((error: Error) => warn(error.message)) }))
            .catch((error: unknown): ConsumeReport => ({ status: 'failed', files: [], batches: 0, records: 0, deadLetters: 0, redelivered: 0, error: new FiledgeError('PLUGIN_ERROR', `${broker.describe()}: ${describeError(error)}`, { plugin: 'queue', cause: error }) }))
          if (both.aborted) break
          if (outcome.status === 'busy') {
            if (!busy) context.logger.info(`${broker.describe()}: another process is consuming it; loading what it promotes, and taking over if it stops`)
            busy = true
            for await (const entry of promoted({ signal: both, warn })) await report(entry.path)
          } else {
            busy = false
            if (outcome.error !== undefined) warn(outcome.error.message)
          }
          await sleep(context.config.watch.pollMs, both)
        }
      })()
      return {
        async close() {
          stop.abort()
          await loop.catch(() => undefined)
        },
      }
    },

    /** Connects to the broker and checks the stream (and consumer) or queue is there; consumes nothing. */
    async healthcheck() {
      await broker.probe()
    },

    stat: (file) => use().files.stat!(file),
    read: (entry, readOptions) => use().files.read(entry, readOptions),
    localPath: (file) => use().files.localPath!(file),

    async describeFile(file, { root }): Promise<FileOrigin | undefined> {
      const manifest = await manifestOf(path.resolve(root, file))
      if (manifest === undefined) return undefined
      const where =
        manifest.broker === 'jetstream'
          ? `jetstream stream ${String(manifest.origin.stream)} consumer ${String(manifest.origin.consumer)} · sequences ${(manifest.sequences ?? []).map(([a, b]) => (a === b ? `${a}` : `${a}–${b}`)).join(', ')}`
          : `rabbitmq ${String(manifest.origin.url)} queue ${String(manifest.origin.queue)} · ${manifest.records} message ids (first ${manifest.ids?.[0] ?? '–'}, last ${manifest.ids?.[manifest.ids.length - 1] ?? '–'})`
      const dead = manifest.deadLetters === null ? '' : ` · ${manifest.deadLetters.count} dead-lettered (${manifest.deadLetters.file})`
      return {
        summary: `${where} · batch ${manifest.batch}, ${manifest.records} record${manifest.records === 1 ? '' : 's'}${dead} · ${manifest.name}${MANIFEST}`,
        details: manifest as unknown as Record<string, unknown>,
      }
    },
  }
}

