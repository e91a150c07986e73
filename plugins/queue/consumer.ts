import path from 'node:path'
import { FiledgeError, describeError, isFiledgeError, sleep, type LedgerStore, type Logger } from '../../core/index.js'
import { classify, deadLetter, messages, openBatch, type Batch, type Classifier } from './batch.js'
import type { Broker, BrokerSession, Delivery } from './broker.js'
import type { Folder, Manifest } from './folder.js'
import type { BatchSettings } from './options.js'
import { idIndex, sequenceIndex, type PromotedIndex } from './promoted.js'

/**
 * Consuming a queue into promoted files, under the source's lease
 * (`queue:<id>` in the ledger: one process consumes a source at a time, so
 * two never split a batch between them).
 *
 * Order of events for a batch, and what a stop at each point leaves:
 *  1. messages delivered into memory — nothing written, nothing acknowledged:
 *     the broker delivers them again (to the next holder);
 *  2. data file, dead letters and manifest written to staging, fsynced —
 *     cleared by the next holder; the messages come again;
 *  3. the ledger's cursor advanced (`cursor:advanced`, fenced by the lease
 *     token and by the cursor it starts from: a process that lost the lease
 *     cannot promote) — the next holder finishes the promotion from staging;
 *  4. data file and dead letters, then the manifest, renamed into the
 *     folder, the folders fsynced — the batch is promoted;
 *  5. every delivery of the batch acknowledged — until the broker has the
 *     acks it delivers them again, and they are recognised from the
 *     manifests (promoted.ts) and acknowledged without a second file.
 * A message is acknowledged only once it is in a promoted file or dead
 * letter; a promoted message is never written again.
 */

export interface ConsumeReport {
  /** `consumed`: the run found nothing more (drain) or the watcher stopped; `busy`: another process holds the lease; `failed`: see `error`. */
  readonly status: 'consumed' | 'busy' | 'failed'
  /** Entry paths of the data files promoted. */
  readonly files: readonly string[]
  readonly batches: number
  readonly records: number
  readonly deadLetters: number
  /** Deliveries of messages already promoted, acknowledged without a file. */
  readonly redelivered: number
  readonly error?: FiledgeError
}

export interface ConsumerContext {
  readonly id: string
  readonly broker: Broker
  readonly settings: BatchSettings
  readonly classifier: Classifier
  readonly folder: Folder
  readonly root: string
  readonly ledger: LedgerStore
  readonly worker: string
  readonly leaseTtlMs: number
  readonly heartbeatMs: number
  readonly logger: Logger
}

export interface ConsumeOptions {
  readonly signal: AbortSignal
  /** A run: stop once the broker holds nothing more. A watcher: go on until the signal. */
  readonly drain: boolean
  /** A data file was promoted (its entry path): list it to the pipeline. */
  onPromoted(file: string): void
}

/** Ids (RabbitMQ) remembered to recognise redeliveries of promoted messages (promoted.ts). */
const REMEMBER_IDS = 1_000_000
/** A run that finds no message for this long asks the broker whether anything is left. */
const IDLE_MS = 100
/** The longest a run waits for messages a stopped consumer held to be delivered again. */
const MAX_REDELIVERY_WAIT_MS = 120_000
/** Redundant deliveries (already promoted) acknowledged this many at a time. */
const ACK_CHUNK = 1_000

interface Cursor {
  readonly batch: number
  readonly name: string
  readonly first?: number
  readonly last?: number
}

const cursorText = (manifest: Manifest): string =>
  JSON.stringify({ batch: manifest.batch, name: manifest.name, ...(manifest.first === undefined ? {} : { first: manifest.first, last: manifest.last }) } satisfies Cursor)

export function createConsumer(ctx: ConsumerContext) {
  const { broker, folder, ledger, settings, logger } = ctx
  const lease = `queue:${ctx.id}`
  const where = () => broker.describe()
  const entryPath = (file: string) => path.relative(ctx.root, path.join(folder.dir, file)).split(path.sep).join('/')
  const failure = (message: string, cause?: unknown) => new FiledgeError('PLUGIN_ERROR', `${where()}: ${broker.hide(message)}`, { plugin: 'queue', cause })
  /** Errors that end the consuming instead of being tried again: the lease is gone. */
  const fatal = new WeakSet<object>()

  async function advance(token: string, from: string | null, manifest: Manifest): Promise<void> {
    const outcome = await ledger.advanceCursor({
      source: lease,
      lease,
      token,
      from,
      to: cursorText(manifest),
      worker: ctx.worker,
      records: manifest.records,
      pages: 0,
      ...(manifest.file === null ? {} : { file: entryPath(manifest.file), hash: manifest.sha256! }),
    })
    if (outcome.status === 'advanced') return
    const error = failure(
      outcome.status === 'lost'
        ? 'lost the queue lease (it expired and another process took it); nothing more is promoted or acknowledged here'
        : `the cursor moved under this process (another one promoted batch ${(JSON.parse(outcome.current ?? '{}') as Partial<Cursor>).batch ?? '?'}); nothing more is promoted or acknowledged here`,
    )
    fatal.add(error)
    throw error
  }

  /**
   * Under a freshly taken lease: finishes a promotion the ledger recorded but
   * a stop cut short, moves the cursor over batches promoted that the ledger
   * lost (a new ledger, or an OS crash before its commit reached the disk),
   * removes what was left half-written. The folder then holds exactly the
   * promoted batches, and the cursor names the newest.
   */
  async function recover(token: string, onPromoted: (file: string) => void): Promise<{ cursor: string | null; batch: number; manifests: Manifest[] }> {
    await folder.prepare()
    let cursor = (await ledger.cursorOf(lease))?.to ?? null
    let batch = 0
    if (cursor !== null) {
      const recorded = JSON.parse(cursor) as Cursor
      batch = recorded.batch
      if (!(await folder.finish(recorded.name))) {
        logger.warn(`${where()}: batch ${recorded.batch} (${recorded.name}) is in the ledger but its files are not in ${entryPath('')}; none of its messages was acknowledged, so the broker delivers them again and they are written into a new batch`)
      }
    }
    const manifests = await folder.manifests()
    for (const manifest of manifests) {
      if (manifest.batch <= batch) continue
      await advance(token, cursor, manifest)
      cursor = cursorText(manifest)
      batch = manifest.batch
      logger.info(`${entryPath(manifest.name)}: promoted before the ledger recorded it; the cursor now moves past it`)
    }
    const removed = await folder.sweep()
    if (removed.length > 0) logger.info(`${where()}: removed ${removed.join(', ')} (a promotion stopped before its manifest; those messages were never acknowledged)`)
    for (const manifest of manifests) if (manifest.file !== null) onPromoted(entryPath(manifest.file))
    return { cursor, batch, manifests }
  }

  return {
    lease,

    async consume(options: ConsumeOptions): Promise<ConsumeReport> {
      const tally = { files: [] as string[], batches: 0, records: 0, deadLetters: 0, redelivered: 0 }
      const report = (status: ConsumeReport['status'], error?: FiledgeError): ConsumeReport => ({ status, ...tally, ...(error === undefined ? {} : { error }) })
      const token = await ledger.takeLease(lease, ctx.worker, ctx.leaseTtlMs)
      if (token === undefined) return report('busy')
      const stop = new AbortController()
      let lost: FiledgeError | undefined
      const renew = setInterval(() => {
        void ledger.renewLease(lease, token, ctx.leaseTtlMs).then(
          (held) => {
            if (held || stop.signal.aborted) return
            lost = failure('lost the queue lease (it expired and another process took it); the open batch is abandoned, unacknowledged')
            stop.abort()
          },
          () => undefined,
        )
      }, ctx.heartbeatMs)
      const signal = AbortSignal.any([options.signal, stop.signal])
      let session: BrokerSession | undefined
      try {
        const state = await recover(token, options.onPromoted)
        // Built for the epoch of the first session, and again if a session finds another (the stream was created again).
        let index: PromotedIndex | undefined
        let epoch: string | undefined
        const indexFor = (session: BrokerSession): PromotedIndex => {
          if (index !== undefined && epoch === session.epoch) return index
          epoch = session.epoch
          index = broker.identity === 'sequence' ? sequenceIndex() : idIndex(REMEMBER_IDS)
          const other = state.manifests.filter((manifest) => manifest.epoch !== session.epoch)
          for (const manifest of state.manifests) if (manifest.epoch === session.epoch) index.add(manifest)
          // Ids need no epoch: what is kept to build the index again is sequences' (a few ranges a manifest), not a million ids.
          if (broker.identity === 'id') state.manifests.length = 0
          if (other.length > 0) {
            logger.info(`${where()}: the stream was created again since batch ${other[other.length - 1].batch} (created ${session.epoch}); sequences of the batches before count in the old stream and are not taken for promoted messages of this one`)
          }
          return index
        }
        let failingSince: number | undefined
        let lastWarning = ''
        let backoff = 250
        while (!signal.aborted) {
          try {
            if (session === undefined) {
              session = await broker.open(logger)
              if (failingSince !== undefined) logger.info(`${where()}: connected again`)
            }
            const outcome = await batchOnce(session, indexFor(session), state, token, signal, options)
            failingSince = undefined
            lastWarning = ''
            backoff = 250
            if (outcome === 'drained') break
          } catch (error) {
            // Stopping (the signal, or the lease lost) is not a failure of the broker: the loop ends as it would have.
            if (signal.aborted) break
            if (fatal.has(error as object)) throw error
            await session?.close().catch(() => undefined)
            session = undefined
            failingSince ??= Date.now()
            // The broker's own errors already start with where they are.
            const text = broker.hide(describeError(error))
            const message = text.startsWith(`${where()}: `) ? text.slice(where().length + 2) : text
            if (options.drain && Date.now() - failingSince >= settings.reconnectMs) {
              throw failure(`${message} (tried for ${Math.round(settings.reconnectMs / 1000)} s: reconnect)`, error)
            }
            if (message !== lastWarning) logger.warn(`${where()}: ${message}; the open batch is abandoned (nothing of it acknowledged), trying again`)
            lastWarning = message
            await sleep(backoff, signal)
            backoff = Math.min(backoff * 2, 5_000)
          }
        }
        if (lost !== undefined) return report('failed', lost)
        return report('consumed')
      } catch (error) {
        const reason = lost ?? (isFiledgeError(error) ? error : failure(describeError(error), error))
        return report('failed', reason)
      } finally {
        clearInterval(renew)
        await session?.close().catch(() => undefined)
        await ledger.releaseLease(lease, token).catch(() => undefined)
      }

      /** Fills one batch and promotes it; `drained` when a run finds nothing more, `stopped` on the signal. */
      async function batchOnce(
        session: BrokerSession,
        index: PromotedIndex,
        state: { cursor: string | null; batch: number; manifests: Manifest[] },
        token: string,
        signal: AbortSignal,
        options: ConsumeOptions,
      ): Promise<'promoted' | 'drained' | 'stopped'> {
        const batch = openBatch()
        const redundant: Delivery[] = []
        let closedBy: string | undefined
        let waitingSince: number | undefined
        const flushRedundant = async () => {
          if (redundant.length === 0) return
          tally.redelivered += redundant.length
          await session.ack(redundant.splice(0))
        }
        while (closedBy === undefined) {
          const closeAt = batch.deliveries.length > 0 ? batch.openedAt + settings.maxWaitMs : Number.POSITIVE_INFINITY
          const delivery = await session.next(Math.min(closeAt, Date.now() + (options.drain ? IDLE_MS : 1_000)), signal)
          if (signal.aborted) {
            // Stopping: the open batch goes back to the broker, unacknowledged; what was already promoted is acknowledged.
            await session.abandon(batch.deliveries).catch(() => undefined)
            await flushRedundant().catch(() => undefined)
            return 'stopped'
          }
          if (delivery === undefined) {
            if (batch.deliveries.length > 0 && Date.now() >= closeAt) {
              closedBy = 'maxWait'
              break
            }
            await flushRedundant()
            if (!options.drain) continue
            const backlog = await session.backlog(batch.deliveries.length)
            if (backlog.ready > 0) continue
            if (backlog.waiting > 0) {
              // Bounded: a consumer configured with an ack wait of hours must not hold a run for hours; the next run has them.
              const patience = Math.min(session.redeliverAfterMs + 2_000, MAX_REDELIVERY_WAIT_MS)
              if (waitingSince === undefined) {
                waitingSince = Date.now()
                logger.info(`${where()}: ${backlog.waiting} message${backlog.waiting === 1 ? ' was' : 's were'} delivered to a consumer that stopped; waiting up to ${Math.round(patience / 1000)} s for the broker to deliver ${backlog.waiting === 1 ? 'it' : 'them'} again`)
              }
              if (Date.now() - waitingSince < patience) continue
            }
            if (batch.deliveries.length === 0) return 'drained'
            closedBy = 'drained'
            break
          }
          take(batch, delivery, index, redundant)
          if (redundant.length >= Math.min(ACK_CHUNK, Math.ceil(session.maxHeld / 2))) await flushRedundant()
          if (messages(batch) >= settings.maxRecords) closedBy = 'maxRecords'
          else if (batch.bytes >= settings.maxBytes) closedBy = 'maxBytes'
          else if (batch.deliveries.length > 0 && batch.deliveries.length + redundant.length >= session.maxHeld) closedBy = 'maxHeld'
        }
        await promote(batch, closedBy, session, index, state, token)
        await flushRedundant()
        return 'promoted'
      }

      async function promote(batch: Batch, closedBy: string, session: BrokerSession, index: PromotedIndex, state: { cursor: string | null; batch: number; manifests: Manifest[] }, token: string): Promise<void> {
        const prepared = folder.build(batch, state.batch + 1, { source: ctx.id, broker: broker.kind, origin: broker.origin, ...(session.epoch === undefined ? {} : { epoch: session.epoch }), identity: broker.identity, closedBy })
        const { manifest } = prepared
        await folder.stage(prepared)
        await advance(token, state.cursor, manifest)
        await folder.publish(manifest)
        state.cursor = cursorText(manifest)
        state.batch = manifest.batch
        if (broker.identity === 'sequence') state.manifests.push(manifest)
        index.add(manifest)
        // Said before the acks go out: the crash tests stop a process here (promoted, not yet acknowledged).
        logger.debug(`${entryPath(manifest.name)}: batch ${manifest.batch} promoted (${manifest.records} records${manifest.deadLetters === null ? '' : `, ${manifest.deadLetters.count} dead letters`}); acknowledging ${batch.deliveries.length} deliveries`)
        tally.batches++
        tally.records += manifest.records
        // Listed before the acks: a file is promoted whatever becomes of them (a connection lost now redelivers its messages, which are recognised).
        if (manifest.file !== null) {
          const file = entryPath(manifest.file)
          tally.files.push(file)
          options.onPromoted(file)
        }
        if (manifest.deadLetters !== null) {
          tally.deadLetters += manifest.deadLetters.count
          const count = manifest.deadLetters.count
          logger.warn(`${where()}: ${count} message${count === 1 ? '' : 's'} dead-lettered into ${entryPath(manifest.deadLetters.file)} (${batch.dead[0].reason}${count > 1 ? ', …' : ''})`)
        }
        await session.ack(batch.deliveries)
      }

      function take(batch: Batch, delivery: Delivery, index: PromotedIndex, redundant: Delivery[]): void {
        const { key, record, reason } = classify(delivery, ctx.classifier)
        if (key !== undefined && index.has(key)) {
          redundant.push(delivery)
          return
        }
        if (batch.deliveries.length === 0) batch.openedAt = Date.now()
        batch.deliveries.push(delivery)
        if (key !== undefined && batch.keys.has(key)) {
          batch.duplicates++
          return
        }
        if (key !== undefined) batch.keys.add(key)
        if (record !== undefined) {
          batch.records.push(record)
          batch.recordKeys.push(key!)
          batch.bytes += record.length + 1
        } else {
          batch.dead.push(deadLetter(delivery, reason!, key))
          batch.deadKeys.push(key)
        }
      }
    },
  }
}

export type Consumer = ReturnType<typeof createConsumer>
