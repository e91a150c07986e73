import { randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { unlink } from 'node:fs/promises'
import path from 'node:path'
import { Readable } from 'node:stream'
import { coerceRows, isoInstant, type RejectedRecord } from '../columns/coerce.js'
import { NO_RECORD_TEXT, type PipelineKeys } from '../config/row-controls.js'
import type { ResolvedFormat, ResolvedPipeline } from '../config/types.js'
import type { FileRef, WriteJob } from '../destination.js'
import { FiledgeError, capped, claimLost, describeError, fileChanged, fileInvalid, isFiledgeError, leaseLapsed, stopped } from '../errors.js'
import { detectFormat, isGzipPath } from '../formats/registry.js'
import type { FileCandidate, Hooks, Lease, SkipReason } from '../hooks.js'
import type { SourceEntry } from '../source.js'
import { hashStream, type HashedStream } from '../source/hash.js'
import { RACY_MS } from '../source/racy.js'
import { decode } from '../source/open.js'
import { pipelineCode } from '../stages/code.js'
import { batchSize, letGo, type RowBatch, type TableSpec } from '../rows.js'
import { batchProtector, protectBatches } from '../protect/columns.js'
import { sidecarOutcome, sidecarWriter, type QuarantineOutcome, type SidecarWriter } from '../quarantine/sidecar.js'
import { cdcChangeCheck } from '../write-modes/cdc.js'

/**
 * One file's way through filedge, top to bottom:
 *
 *   beforeHash (the stat cache) → read + hash → stat (still the listed
 *   version?) → claim → (loaded: heal from the destination's marker) →
 *   load → coerce → transform → commit → complete → afterCommit → archive
 *
 * Every step is a hook; this file only sequences them and turns what they
 * say into one outcome. Everything after the claim completes the lease,
 * fails it or releases it, so the ledger always explains what happened.
 */

export type FileOutcome =
  | {
      readonly kind: 'committed'
      readonly hash: string
      readonly rows: number
      readonly isNew: boolean
      readonly reclaimed: boolean
      readonly retried: boolean
      readonly healed: boolean
      /** Records the load set aside (quarantine), and where. */
      readonly quarantined?: QuarantineOutcome
    }
  | { readonly kind: 'failed'; readonly hash?: string; readonly error: FiledgeError; readonly isNew: boolean; readonly reclaimed: boolean; readonly retried: boolean }
  | { readonly kind: 'skipped'; readonly hash?: string; readonly reason: SkipReason; readonly isNew: boolean }
  | { readonly kind: 'released'; readonly hash: string; readonly isNew: boolean }

export interface FileRunContext {
  readonly hooks: Hooks
  readonly worker: string
  readonly heartbeatMs: number
  /** Aborted when the run is stopping: no new file starts, and files in flight are rolled back and released. */
  readonly signal: AbortSignal
  /** Where remote files over SMALL_FILE bytes are written while they are hashed (see hashStream). */
  readonly spoolDir: string
  /** Files in flight by pipeline and hash (inFlightKey), so two names for the same bytes load once. */
  readonly inFlight: Map<string, Promise<FileOutcome>>
  /** The keys of protected columns and quarantines, by pipeline (requireKeys). */
  readonly keys: ReadonlyMap<string, PipelineKeys>
}

/** Same bytes in two pipelines are two files: the in-flight map is keyed by both. */
export function inFlightKey(pipeline: ResolvedPipeline, hash: string): string {
  return `${pipeline.name}\u0000${hash}`
}

/**
 * Files up to this size are kept in memory from hashing to parsing: no second
 * read per small file (a third of a 5,000-file run went to the second open,
 * read and close). Larger remote files are spooled to disk instead.
 */
const SMALL_FILE = 1024 * 1024


/** The bytes a claimed file loads from: what hashing kept or spooled, or the source once more. */
interface Claimed {
  readonly file: FileRef
  readonly bytes?: Buffer
  readonly localPath?: string
  /** Spooled by hashing (a remote file): loads read it, and it is deleted when the file is done. */
  readonly spooled?: boolean
}

/**
 * Hash, claim and load one candidate. Two names for the same bytes in one
 * run: the second waits for the first, then claims (which records the alias
 * and finds the file committed), or, if the first failed, skips instead of
 * spending a second attempt on the same bytes.
 */
export async function ingestFile(candidate: FileCandidate, context: FileRunContext): Promise<FileOutcome> {
  const { hooks } = context
  const { pipeline } = candidate
  const skip = (reason: SkipReason, message: string, hash?: string, isNew = false): FileOutcome => {
    hooks.fileSkipped.call({ pipeline, path: candidate.path, hash, reason, message })
    return { kind: 'skipped', hash, reason, isNew }
  }
  const failBeforeClaim = async (failure: FiledgeError, hash?: string): Promise<FileOutcome> => {
    const error = capped(failure)
    await hooks.fileFailed.promise({ pipeline, path: candidate.path, hash, error, terminal: false }).catch(() => undefined)
    return { kind: 'failed', hash, error, isNew: false, reclaimed: false, retried: false }
  }

  // 1. Identify: the stat cache (or another beforeHash tap) may know the file; else its bytes are read and hashed.
  let identity: Identity
  try {
    identity = await identify(candidate, context)
  } catch (error) {
    return failBeforeClaim(isFiledgeError(error) ? error : new FiledgeError('FILE_INVALID', `${candidate.path}: cannot read: ${describeError(error)}`, { file: candidate.path, cause: error }))
  }
  if ('skip' in identity) {
    const outcome = skip(identity.reason, identity.skip, identity.hash)
    if (identity.reason === 'committed' && identity.hash !== undefined) await archive(candidate, identity.hash, context)
    return outcome
  }
  try {
    const { hash } = identity
    if (context.signal.aborted) return skip('stopped', 'the run is stopping; not claimed', hash)
    const key = inFlightKey(pipeline, hash)
    const earlier = context.inFlight.get(key)
    const first = earlier === undefined ? undefined : await earlier
    if (first?.kind === 'failed') return skip('duplicate', 'same bytes as another file in this run, which failed', hash)
    // A second name for bytes this run just loaded arrived with them: it does not reopen a truncate file the first one just
    // applied. Bytes the first name found already committed (seen again, not loaded) did not arrive with it: the second name
    // is an arrival of its own, and decides by itself (the snapshot that came back under a new name wins).
    const attempt = claimAndLoad(candidate, identity, context, first?.kind !== 'committed')
    if (earlier === undefined) context.inFlight.set(key, attempt)
    return await attempt
  } finally {
    if (identity.spooled !== undefined) await unlink(identity.spooled).catch(() => undefined)
  }
}

type Identity = { skip: string; reason: SkipReason; hash?: string } | ({ hash: string; remember: boolean; localPath?: string } & Partial<HashedStream>)

/**
 * The skip for a file the source reported gone or changed while it was read;
 * anything else (a connection dropped mid-file) fails the file, naming the
 * source.
 */
function unreadable(error: unknown, candidate: FileCandidate): { skip: string; reason: SkipReason } {
  const reason = (failure: FiledgeError) => failure.message.replace(`${candidate.path}: `, '')
  if (isFiledgeError(error) && error.code === 'FILE_GONE') return { skip: `removed before it could be hashed (${reason(error)}); skipped`, reason: 'gone' }
  if (isFiledgeError(error) && error.code === 'FILE_CHANGED') return { skip: reason(error), reason: 'changing' }
  if (isFiledgeError(error)) throw error
  const source = candidate.pipeline.source
  throw new FiledgeError('PLUGIN_ERROR', `${candidate.path}: reading it from ${source.describe()} failed: ${describeError(error)}`, { file: candidate.path, plugin: `source:${source.name}`, cause: error })
}

/** A listed file's bytes from its source (or whoever answers `read` first), as `sourceBytes` taps pass them on. */
async function readSource(pipeline: ResolvedPipeline, entry: SourceEntry, signal: AbortSignal, hooks: Hooks): Promise<Readable> {
  const stream = await hooks.read.promise({ pipeline, entry, signal })
  if (stream === undefined) throw new FiledgeError('INTERNAL', `${entry.path}: no source reads pipeline "${pipeline.name}"`, { file: entry.path })
  return hooks.sourceBytes.call(stream, { pipeline, entry })
}

async function identify(candidate: FileCandidate, context: FileRunContext): Promise<Identity> {
  const { hooks } = context
  const { pipeline } = candidate
  const pre = await hooks.beforeHash.promise(candidate)
  if (pre !== undefined && 'skip' in pre) return { skip: pre.skip, reason: pre.reason ?? 'plugin', ...(pre.hash === undefined ? {} : { hash: pre.hash }) }
  const localPath = await hooks.locate.promise({ pipeline, path: candidate.path })
  if (pre !== undefined) return { hash: pre.hash, remember: false, ...(localPath === undefined ? {} : { localPath }) }

  const started = Date.now()
  let hashed: HashedStream
  try {
    const raw = await readSource(pipeline, candidate, context.signal, hooks)
    const spool = localPath === undefined ? () => path.join(context.spoolDir, `${process.pid}-${randomUUID()}`) : undefined
    hashed = await hashStream(raw, { keep: SMALL_FILE, ...(spool === undefined ? {} : { spool }) })
  } catch (error) {
    return unreadable(error, candidate)
  }
  const identity = { ...hashed, remember: false, ...(localPath === undefined ? {} : { localPath }) }
  // A file not claimed after all does not keep its spool file.
  const discard = () => hashed.spooled !== undefined && void unlink(hashed.spooled).catch(() => undefined)
  const changed = (skip: { skip: string; reason: SkipReason }): Identity => {
    discard()
    return skip
  }
  if (hashed.size !== candidate.size) return changed({ skip: 'still being written (its size changed while it was read); a later run loads it', reason: 'changing' })
  // An exact version (an ETag) was checked by the read itself, and such a store writes objects whole: no stat (a HEAD per object).
  const exact = pipeline.source.capabilities?.exactVersions === true
  if (!exact) {
    // Bytes read from a file that was being rewritten meanwhile may be half of each version: not claimed.
    const now = await hooks.stat.promise({ pipeline, path: candidate.path }).catch((error: unknown) => {
      discard()
      throw error
    })
    if (now === null) return changed({ skip: 'removed while it was read; skipped', reason: 'gone' })
    if (now !== undefined && (now.version !== candidate.version || now.size !== candidate.size)) {
      return changed({ skip: 'still being written (its size or version changed while it was read); a later run loads it', reason: 'changing' })
    }
  }
  return { ...identity, remember: exact || candidate.modifiedAt <= started - RACY_MS }
}

async function claimAndLoad(candidate: FileCandidate, identity: Exclude<Identity, { skip: string }>, context: FileRunContext, arrival: boolean): Promise<FileOutcome> {
  const { hooks } = context
  const { pipeline } = candidate
  const { hash } = identity
  const file: FileRef = { hash, path: candidate.path, size: candidate.size, version: candidate.version, modifiedAt: candidate.modifiedAt }
  const claim = await hooks.claim.promise({ pipeline, file, worker: context.worker, version: candidate.version, arrival, remember: identity.remember })
  if (claim === undefined) throw new FiledgeError('INTERNAL', 'no ledger answered the claim')
  if (claim.status === 'skipped') {
    hooks.fileSkipped.call({ pipeline, path: file.path, hash, reason: claim.reason, message: claim.message })
    if (claim.reason === 'committed') await archive(candidate, hash, context)
    return { kind: 'skipped', hash, reason: claim.reason, isNew: claim.isNew }
  }
  const { lease, isNew, reclaimed, retried } = claim
  const started = performance.now()
  hooks.fileClaimed.call({ pipeline, file, attempt: lease.attempt, reclaimed })
  const claimed: Claimed = {
    file,
    ...(identity.bytes === undefined ? {} : { bytes: identity.bytes }),
    ...(identity.spooled !== undefined ? { localPath: identity.spooled, spooled: true } : identity.localPath === undefined ? {} : { localPath: identity.localPath }),
  }
  const result = await loadClaimed(pipeline, claimed, lease, context)
  if ('released' in result) {
    hooks.fileSkipped.call({ pipeline, path: file.path, hash, reason: context.signal.aborted ? 'stopped' : 'held', message: result.released })
    return { kind: 'released', hash, isNew }
  }
  if ('error' in result) {
    await hooks.fileFailed.promise({ pipeline, path: file.path, hash, error: result.error, terminal: result.terminal }).catch((error) =>
      hooks.log.call({ level: 'error', message: `fileFailed hook failed for ${file.path}: ${describeError(error)}` }),
    )
    return { kind: 'failed', hash, error: result.error, isNew, reclaimed, retried }
  }
  const quarantined = result.quarantined === undefined ? {} : { quarantined: result.quarantined }
  await hooks.afterCommit
    .promise({
      pipeline,
      file,
      rows: result.rows,
      attempt: lease.attempt,
      durationMs: Math.round(performance.now() - started),
      ...(result.healed === undefined ? {} : { healed: result.healed }),
      ...(result.quarantined === undefined ? {} : { quarantined: result.quarantined.rows, sidecar: result.quarantined.sidecar }),
    })
    .catch((error) => hooks.log.call({ level: 'error', message: `${describeError(error)} (the file stays committed)` }))
  await archive(candidate, hash, context)
  return { kind: 'committed', hash, rows: result.rows, isNew, reclaimed, retried, healed: result.healed !== undefined, ...quarantined }
}

/**
 * `onCommitted`: the source deletes or moves its copy of a file whose
 * COMMITTED is durable (just completed, or found committed by the stat cache
 * or the claim: an archive that failed last time is tried again). A failure
 * is reported and never un-commits; the next run tries again.
 */
async function archive(candidate: FileCandidate, hash: string, context: FileRunContext): Promise<void> {
  const { hooks } = context
  const { pipeline } = candidate
  const action = pipeline.onCommitted
  if (action === undefined || context.signal.aborted) return
  try {
    const outcome = await hooks.archive.promise({ pipeline, entry: candidate, hash, action })
    if (outcome === undefined) throw new FiledgeError('PLUGIN_ERROR', `the ${pipeline.source.name} source cannot delete or move files`)
    await hooks.fileArchived.promise({ pipeline, path: candidate.path, hash, action, outcome })
  } catch (error) {
    hooks.log.call({ level: 'error', message: `${candidate.path}: committed, but onCommitted failed (the next run tries again): ${describeError(error)}` })
  }
}

/** Whatever a load threw, as the failure the ledger records and the reporters show (the same, capped text). */
function toError(error: unknown, file: string): FiledgeError {
  if (isFiledgeError(error)) return capped(error)
  return new FiledgeError('INTERNAL', `${file}: ${describeError(error)}`, { file, cause: error })
}

/** The destination table of a pipeline: its columns, but in cdc mode the change columns without the op column (the op describes a change, not the row). */
export function tableSpec(pipeline: ResolvedPipeline): TableSpec {
  const mode = pipeline.writeMode
  if (mode.kind === 'cdc') return { name: pipeline.table, columns: mode.changeColumns.filter((column) => column.name !== mode.op) }
  return {
    name: pipeline.table,
    columns: pipeline.tableColumns.map(({ name, type, required, precision, scale }) => ({ name, type, required, precision, scale })),
  }
}

/** Keeps the lease alive while the file loads; aborts the load the moment it is lost. */
function keepAlive(lease: Lease, file: FileRef, everyMs: number, controller: AbortController, hooks: Hooks): () => void {
  let beating = false
  const timer = setInterval(() => {
    if (beating) return
    beating = true
    lease
      .heartbeat()
      .then((held) => {
        if (!held) controller.abort(claimLost(file.path, 'another worker reclaimed it while this worker was loading'))
      })
      .catch((error) => hooks.log.call({ level: 'warn', message: `heartbeat for ${file.path} failed (will retry): ${describeError(error)}` }))
      .finally(() => {
        beating = false
      })
  }, everyMs)
  return () => clearInterval(timer)
}

/** Hands on every batch, then says how many rows they held once the last is read: the quarantine's limits are checked then. */
async function* settle(batches: AsyncIterable<RowBatch>, done: (rows: number) => void): AsyncGenerator<RowBatch> {
  let rows = 0
  for await (const batch of batches) {
    rows += batch.rowNumbers.length
    yield batch
  }
  done(rows)
}

/** A bad row of a format whose records have no text (Parquet, Excel) in a quarantine pipeline: it fails its file, saying why it was not set aside. */
function notQuarantined(error: FiledgeError, format: string): FiledgeError {
  return new FiledgeError(error.code, `${error.message} (not quarantined: ${format} records have no text of their own to keep and replay)`, {
    file: error.file,
    line: error.line,
    column: error.column,
    value: error.value,
  })
}

/** The longest a load goes without giving the event loop a turn (see `counted`). */
const TURN_MS = 100

/**
 * Hands on every batch and reports the rows so far, and gives the event
 * loop a turn when `turnMs` have passed since it last did. Rows that come
 * without I/O (a replay from the cache, a small file read at once) into a
 * destination that writes synchronously (SQLite) would otherwise hold the
 * loop for the whole file, and the lease's heartbeat, a Ctrl-C and the live
 * view wait as long: a 1M-row replay into SQLite ran 2.5 s with no turn.
 */
async function* counted(batches: AsyncIterable<RowBatch>, onRows: (rows: number) => void, signal: AbortSignal, turnMs: number): AsyncGenerator<RowBatch> {
  let rows = 0
  let turned = performance.now()
  for await (const batch of batches) {
    if (signal.aborted) throw signal.reason
    rows += batchSize(batch)
    onRows(rows)
    if (performance.now() - turned >= turnMs) {
      await new Promise((resolve) => setImmediate(resolve))
      turned = performance.now()
      if (signal.aborted) throw signal.reason
    }
    yield batch
  }
  if (signal.aborted) throw signal.reason
}

/**
 * Asks the destination whether this load of the file is already committed
 * there (its load marker). Returns how the file was healed, or undefined when
 * the destination does not hold this load (or cannot tell).
 */
async function markedLoad(
  pipeline: ResolvedPipeline,
  file: FileRef,
  lease: Lease,
  hooks: Hooks,
  how: (load: string) => string,
): Promise<{ rows: number; healed: string; code?: string | null; quarantined?: QuarantineOutcome } | undefined> {
  const marker = await hooks.loaded.promise({ pipeline, file, loadId: lease.loadId })
  if (marker === null || marker === undefined || marker.loadId !== lease.loadId) return undefined
  const healed = how(`load ${lease.loadId.slice(0, 8)}, ${marker.rows} rows`)
  // The load's sidecar was made durable before its COMMIT: its records are what the load set aside.
  const quarantined = pipeline.quarantine === undefined ? undefined : sidecarOutcome(pipeline.quarantine, pipeline.name, file.hash, lease.loadId)
  return {
    rows: marker.rows,
    healed: marker.note === undefined ? healed : `${healed}; ${marker.note}`,
    ...(marker.code === undefined ? {} : { code: marker.code }),
    ...(quarantined === undefined ? {} : { quarantined }),
  }
}

/**
 * Whether an error from the commit hook leaves the COMMIT's outcome unknown:
 * the connection dropped, the server went away, a driver or plugin failed.
 * Errors about the file's data, its lease or the run are known outcomes.
 */
function outcomeUnknown(error: FiledgeError): boolean {
  return error.code === 'PLUGIN_ERROR' || error.code === 'INTERNAL'
}

/**
 * The claimed bytes as a stream: the ones hashing kept, while the source
 * still has the version they were read at (asked when the format first
 * reads); the spool file; or the source read once more, re-hashed on the
 * way: bytes that are not the claimed ones fail with FILE_CHANGED at their
 * end, so a file rewritten after hashing never commits, nor one removed
 * (FILE_CHANGED too: the claimed bytes are gone).
 */
function claimedBytes(pipeline: ResolvedPipeline, claimed: Claimed, signal: AbortSignal, hooks: Hooks): Readable {
  const { file } = claimed
  const options = { limits: pipeline.limits }
  if (claimed.spooled === true) return decode(createReadStream(claimed.localPath!, { highWaterMark: 256 * 1024 }), file, options)
  const fromSource = async () => {
    const stream = await readSource(pipeline, file, signal, hooks).catch((error: unknown) => {
      if (isFiledgeError(error) && error.code === 'FILE_GONE') throw fileChanged(file.path, 'removed or renamed after it was hashed; nothing was loaded (the same bytes are loaded again if they reappear)')
      throw error
    })
    return decode(stream, file, options)
  }
  const kept = claimed.bytes
  if (kept === undefined) return deferred(fromSource)
  const exact = pipeline.source.capabilities?.exactVersions === true
  return deferred(async () => {
    // An exact version names these bytes: a newer one at the path is another file, loaded by the next listing.
    const now = exact ? undefined : await hooks.stat.promise({ pipeline, path: file.path })
    // Rewritten, replaced or removed since it was hashed: the source is read again, and the load fails as it should.
    if (now !== undefined && (now === null || now.version !== file.version || now.size !== file.size)) return fromSource()
    // The very bytes that were hashed: nothing to verify, and for a plain file no stream machinery (per small file, a
    // pipeline and a re-hash were a tenth of a run).
    return isGzipPath(file.path) ? decode(Readable.from([kept], { objectMode: false }), file, { ...options, verify: false }) : kept
  })
}

/**
 * A stream whose bytes come from `open`, called when the consumer first
 * reads (a format asks for its stream synchronously; the source answers
 * asynchronously). Destroying it destroys what `open` opened.
 */
function deferred(open: () => Promise<Readable | Buffer>): Readable {
  let inner: Readable | undefined
  let opened = false
  const out: Readable = new Readable({
    read() {
      if (inner !== undefined) {
        inner.resume()
        return
      }
      if (opened) return
      opened = true
      open().then(
        (bytes) => {
          if (Buffer.isBuffer(bytes)) {
            out.push(bytes)
            out.push(null)
            return
          }
          inner = bytes
          if (out.destroyed) return void bytes.destroy()
          bytes.on('data', (chunk: Buffer) => out.push(chunk) || bytes.pause())
          bytes.once('end', () => out.push(null))
          bytes.once('error', (error) => out.destroy(error))
        },
        (error: Error) => out.destroy(error),
      )
    },
    destroy(error, callback) {
      inner?.destroy()
      callback(error)
    },
  })
  return out
}

/**
 * The per-file path after the claim: (loaded) → load → coerce → transform →
 * commit → complete.
 */
async function loadClaimed(
  pipeline: ResolvedPipeline,
  claimed: Claimed,
  lease: Lease,
  context: FileRunContext,
): Promise<{ rows: number; healed?: string; quarantined?: QuarantineOutcome } | { error: FiledgeError; terminal: boolean } | { released: string }> {
  const { hooks } = context
  const { file } = claimed
  const controller = new AbortController()
  const heartbeat = keepAlive(lease, file, context.heartbeatMs, controller, hooks)
  // A graceful stop aborts the load: the destination rolls back and the lease goes back to the ledger.
  const onStop = () => controller.abort(stopped(file.path))
  if (context.signal.aborted) onStop()
  else context.signal.addEventListener('abort', onStop, { once: true })
  // A destination that reads the file itself never drains the format's stream; close every stream opened for this file once it is done,
  // and whatever else the format holds for it.
  const opened: Readable[] = []
  let release: (() => unknown) | undefined
  let released: unknown
  const stop = () => {
    heartbeat()
    context.signal.removeEventListener('abort', onStop)
    for (const stream of opened) stream.destroy()
    released = release?.()
  }
  // Set once the destination was handed the file: an error from then on may hide a COMMIT that happened.
  let committing = false
  // Quarantine: the sidecar being written, and what it held once the file's last record was read.
  let sidecar: SidecarWriter | undefined
  let quarantined: QuarantineOutcome | undefined
  try {
    // A load that may have committed without the ledger hearing of it (a reclaim, a retry, a requeue), or a lapsed lease.
    const heal =
      lease.verify || lease.lapsed !== undefined
        ? await markedLoad(pipeline, file, lease, hooks, (load) => `already committed in the destination by an earlier attempt (${load}); the ledger had not recorded it, so it was not loaded again`)
        : undefined
    if (heal !== undefined) {
      stop()
      await lease.complete(heal.rows, heal.healed, heal.code, heal.quarantined)
      hooks.log.call({ level: 'warn', message: `${file.path}: healed: ${heal.healed}` })
      return heal
    }
    if (lease.lapsed !== undefined) throw leaseLapsed(file.path, lease.lapsed)
    const format: ResolvedFormat | undefined = pipeline.format ?? detectFormat(file.path)
    if (format === undefined) throw fileInvalid(file.path, "cannot tell the format from the file's extension; set `format` on the pipeline")
    const open = () => {
      const stream = claimedBytes(pipeline, claimed, controller.signal, hooks)
      opened.push(stream)
      return stream
    }
    const code = pipelineCode(pipeline)?.code
    // A spool file is the claimed bytes, private to this run; gzipped, it is not what a format reads.
    const localCopy = claimed.spooled === true && !isGzipPath(file.path) ? { localCopy: claimed.localPath } : {}
    const { quarantine } = pipeline
    const raw = await hooks.load.promise({ pipeline, file, format, open, ...localCopy, signal: controller.signal, ...(quarantine === undefined ? {} : { recordText: true as const }) })
    if (raw === undefined) throw fileInvalid(file.path, `no plugin loads "${format.type}" files; add a format plugin for it`)
    // Replayed rows hold what their plugin opened (the cache's file) until read to their end: a pipeline whose last stage was
    // cached never reads them.
    release = 'replayed' in raw ? () => letGo(raw.replayed) : () => raw.close?.()
    const keys = context.keys.get(pipeline.name)
    const protector = batchProtector(pipeline.columns, keys?.columns ?? new Map())
    // Replayed rows were coerced (and protected) when they were parsed; parsed ones are coerced here, and observed as they pass.
    let typed: AsyncIterable<RowBatch>
    if ('replayed' in raw) typed = raw.replayed
    else {
      let rejected = 0
      if (quarantine !== undefined) {
        sidecar = sidecarWriter({ quarantine, pipeline: pipeline.name, file: file.path, hash: file.hash, loadId: lease.loadId, format, headerText: raw.headerText, ...(keys?.quarantine === undefined ? {} : { key: keys.quarantine }) })
      }
      const writer = sidecar
      const coerced = coerceRows(raw, pipeline.columns, {
        file: file.path,
        unknownColumns: pipeline.unknownColumns,
        ...(writer === undefined
          ? {}
          : {
              onReject: NO_RECORD_TEXT.has(format.type)
                ? (record: RejectedRecord) => {
                    throw notQuarantined(record.errors[0], format.type)
                  }
                : (record: RejectedRecord) => {
                    rejected++
                    writer.reject(record)
                  },
              ...(pipeline.writeMode.kind === 'cdc' ? { rowCheck: cdcChangeCheck(pipeline.writeMode, file.path, pipeline.columns.map((column) => column.name)) } : {}),
            }),
      })
      const settled = writer === undefined ? coerced : settle(coerced, (kept) => (quarantined = writer.finish(kept + rejected)))
      typed = hooks.parsedRows.call(protector === undefined ? settled : protectBatches(settled, protector), { pipeline, file, format })
    }
    const transformed = await hooks.transform.promise(typed, { pipeline, file })
    // No transform changed the stream (none is tapped, or each handed it on as it was), and no row control stands between the
    // format and the destination: quarantine and protected columns need every row to pass through here (DuckDB's own read_csv
    // would load the bad rows' neighbours without them, and the clear values).
    const untransformed = transformed === typed && quarantine === undefined && protector === undefined
    const job: WriteJob = {
      pipeline: pipeline.name,
      table: tableSpec(pipeline),
      writeMode: pipeline.writeMode,
      file,
      loadId: lease.loadId,
      ...(code === undefined ? {} : { code }),
      ingestedAt: isoInstant(new Date()),
      batches: counted(transformed, (rows) => hooks.fileProgress.call({ pipeline, file, rows }), controller.signal, Math.min(TURN_MS, context.heartbeatMs / 4)),
      ...(untransformed && !('replayed' in raw)
        ? { source: { format, fields: raw.fields, headerLine: raw.headerLine, columns: pipeline.columns, unknownColumns: pipeline.unknownColumns, limits: pipeline.limits } }
        : {}),
      ...(claimed.localPath === undefined ? {} : { localPath: claimed.localPath }),
      signal: controller.signal,
      async assertLease() {
        if (controller.signal.aborted) throw controller.signal.reason
        if (!(await lease.isHeld())) throw claimLost(file.path, 'another worker reclaimed it before the destination commit')
      },
    }
    committing = true
    const result = await hooks.commit.promise(job)
    if (result === undefined) throw new FiledgeError('PLUGIN_ERROR', `${file.path}: no destination committed pipeline "${pipeline.name}"`, { file: file.path })
    stop()
    await lease.complete(result.rows, undefined, undefined, quarantined)
    return { rows: result.rows, ...(quarantined === undefined ? {} : { quarantined }) }
  } catch (caught) {
    stop()
    sidecar?.abort()
    const error = toError(controller.signal.aborted && isFiledgeError(controller.signal.reason) ? controller.signal.reason : caught, file.path)
    if (error.code === 'CLAIM_LOST') return { error, terminal: false }
    if (error.code === 'STOPPED' || error.code === 'DESTINATION_LOCKED') {
      // Not an attempt that failed (the run stopped; the destination stayed locked by others): the attempt is given back with the lease.
      await lease.release().catch(() => undefined)
      if (error.code === 'STOPPED') return { released: 'the run stopped before it committed; its lease was released for the next run' }
      hooks.log.call({ level: 'warn', message: error.message })
      return { released: error.message }
    }
    if (committing && outcomeUnknown(error)) {
      // The error may have come after the COMMIT (a connection lost while it was in flight): the destination knows.
      const heal = await markedLoad(pipeline, file, lease, hooks, (load) => `committed in the destination (${load}) although the write reported an error: ${describeError(error)}`).catch(
        () => undefined,
      )
      if (heal !== undefined) {
        try {
          await lease.complete(heal.rows, heal.healed, heal.code, heal.quarantined)
        } catch (completeError) {
          return { error: toError(completeError, file.path), terminal: false }
        }
        hooks.log.call({ level: 'warn', message: `${file.path}: healed: ${heal.healed}` })
        return heal
      }
    }
    try {
      const { terminal } = await lease.fail(error, error.code === 'LEASE_LAPSED')
      return { error, terminal }
    } catch (failError) {
      return { error: toError(failError, file.path), terminal: false }
    }
  } finally {
    // Done with the file only once what was opened for it is closed: a watch runs for days, one descriptor per retry adds up.
    await released
  }
}
