import { stat } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { coerceRows, isoInstant } from '../columns/coerce.js'
import type { ResolvedFormat, ResolvedPipeline } from '../config/types.js'
import type { FileRef, WriteJob } from '../destination.js'
import { FiledgeError, capped, claimLost, describeError, fileInvalid, isFiledgeError, leaseLapsed, stopped } from '../errors.js'
import { detectFormat } from '../formats/registry.js'
import type { FileCandidate, Hooks, Lease, SkipReason } from '../hooks.js'
import type { FileStat } from '../ledger/types.js'
import { hashFile } from '../source/hash.js'
import { OPENED_OUTSIDE, boundaryOf, confirmInside } from '../source/links.js'
import { openHashedBytes, openSource } from '../source/open.js'
import type { RowBatch, TableSpec } from '../rows.js'

export type FileOutcome =
  | { readonly kind: 'committed'; readonly hash: string; readonly rows: number; readonly isNew: boolean; readonly reclaimed: boolean; readonly retried: boolean; readonly healed: boolean }
  | { readonly kind: 'failed'; readonly hash?: string; readonly error: FiledgeError; readonly isNew: boolean; readonly reclaimed: boolean; readonly retried: boolean }
  | { readonly kind: 'skipped'; readonly hash?: string; readonly reason: SkipReason; readonly isNew: boolean }
  | { readonly kind: 'released'; readonly hash: string; readonly isNew: boolean }

export interface FileRunContext {
  readonly hooks: Hooks
  readonly worker: string
  readonly heartbeatMs: number
  /** Aborted when the run is stopping: no new file starts, and files in flight are rolled back and released. */
  readonly signal: AbortSignal
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
    columns: pipeline.columns.map(({ name, type, required, precision, scale }) => ({ name, type, required, precision, scale })),
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

async function* counted(batches: AsyncIterable<RowBatch>, onRows: (rows: number) => void, signal: AbortSignal): AsyncGenerator<RowBatch> {
  let rows = 0
  for await (const batch of batches) {
    if (signal.aborted) throw signal.reason
    rows += batch.rows.length
    onRows(rows)
    yield batch
  }
  if (signal.aborted) throw signal.reason
}

/**
 * How long after its last modification a file's stat starts to vouch for its
 * bytes. Within the filesystem's mtime granularity a same-size rewrite leaves
 * the stat unchanged (git's "racily clean" index entries), so a file hashed
 * that soon after a write is not entered in the stat cache; the next run
 * hashes it again and enters it then. 2 s covers the coarsest common
 * granularity (FAT); ext4 and APFS tick in nanoseconds to milliseconds.
 */
export const RACY_MS = 2000

/**
 * Hashes a candidate, unless a `beforeHash` plugin skips it or vouches for its
 * hash. `stat` is what the hash vouches for, for the ledger's stat cache.
 */
export async function identify(candidate: FileCandidate, hooks: Hooks): Promise<{ skip: string; reason: SkipReason } | { hash: string; stat?: FileStat; read?: HashedBytes }> {
  const pre = await hooks.beforeHash.promise(candidate)
  if (pre !== undefined && 'skip' in pre) return { skip: pre.skip, reason: 'plugin' }
  if (pre !== undefined) return { hash: pre.hash }
  const started = Date.now()
  const boundary = await boundaryOf(candidate.pipeline)
  let hashed
  try {
    hashed = await hashFile(candidate.absPath, candidate.size, boundary === undefined ? undefined : confirmInside(boundary, candidate))
  } catch (error) {
    // Discovery would have left it out, had the link been there then: skipped the same way, not failed.
    if (isFiledgeError(error) && error.code === 'FILE_CHANGED') return { skip: OPENED_OUTSIDE, reason: 'changing' }
    throw error
  }
  const { hash, size, bytes } = hashed
  const after = await stat(candidate.absPath)
  if (size !== candidate.size || after.size !== candidate.size || after.mtimeMs !== candidate.mtimeMs || after.ino !== candidate.ino || after.dev !== candidate.dev) {
    return { skip: 'still being written (size, mtime or inode changed while hashing); a later run will load it', reason: 'changing' }
  }
  const read = bytes === undefined ? {} : { read: { bytes, ino: candidate.ino, dev: candidate.dev } }
  if (candidate.mtimeMs > started - RACY_MS) return { hash, ...read }
  return { hash, stat: { size: candidate.size, mtimeMs: candidate.mtimeMs, ino: candidate.ino, dev: candidate.dev }, ...read }
}

/** A small file's bytes as hashing read them, with the inode they were read from (see openHashedBytes). */
export interface HashedBytes {
  readonly bytes: Buffer
  readonly ino: number
  readonly dev: number
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
): Promise<{ rows: number; healed: string } | undefined> {
  const marker = await hooks.loaded.promise({ pipeline, file, loadId: lease.loadId })
  if (marker === null || marker === undefined || marker.loadId !== lease.loadId) return undefined
  const healed = how(`load ${lease.loadId.slice(0, 8)}, ${marker.rows} rows`)
  return { rows: marker.rows, healed: marker.note === undefined ? healed : `${healed}; ${marker.note}` }
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
 * The per-file path: claim → (loaded) → load → coerce → transform → commit →
 * complete. Everything after the claim either completes the lease, fails it
 * or releases it, so the ledger always explains what happened to the file.
 */
export async function loadClaimed(
  pipeline: ResolvedPipeline,
  file: FileRef,
  lease: Lease,
  context: FileRunContext,
  hashed?: HashedBytes,
): Promise<{ rows: number; healed?: string } | { error: FiledgeError; terminal: boolean } | { released: string }> {
  const { hooks } = context
  const controller = new AbortController()
  const heartbeat = keepAlive(lease, file, context.heartbeatMs, controller, hooks)
  // A graceful stop aborts the load: the destination rolls back and the lease goes back to the ledger.
  const onStop = () => controller.abort(stopped(file.path))
  if (context.signal.aborted) onStop()
  else context.signal.addEventListener('abort', onStop, { once: true })
  // A destination that reads the file itself never drains the format's stream; close every stream opened for this file once it is done.
  const opened: Readable[] = []
  const stop = () => {
    heartbeat()
    context.signal.removeEventListener('abort', onStop)
    for (const stream of opened) stream.destroy()
  }
  // Set once the destination was handed the file: an error from then on may hide a COMMIT that happened.
  let committing = false
  try {
    // A load that may have committed without the ledger hearing of it (a reclaim, a retry, a requeue), or a lapsed lease.
    const heal =
      lease.verify || lease.lapsed !== undefined
        ? await markedLoad(pipeline, file, lease, hooks, (load) => `already committed in the destination by an earlier attempt (${load}); the ledger had not recorded it, so it was not loaded again`)
        : undefined
    if (heal !== undefined) {
      stop()
      await lease.complete(heal.rows, heal.healed)
      hooks.log.call({ level: 'warn', message: `${file.path}: healed: ${heal.healed}` })
      return heal
    }
    if (lease.lapsed !== undefined) throw leaseLapsed(file.path, lease.lapsed)
    const format: ResolvedFormat | undefined = pipeline.format ?? detectFormat(file.path)
    if (format === undefined) throw fileInvalid(file.path, "cannot tell the format from the file's extension; set `format` on the pipeline")
    const boundary = await boundaryOf(pipeline)
    const options = { limits: pipeline.limits, ...(boundary === undefined ? {} : { confirm: confirmInside(boundary, file) }) }
    const open = () => {
      const stream = hashed === undefined ? openSource(file, options) : openHashedBytes(file, hashed.bytes, hashed, options)
      opened.push(stream)
      return stream
    }
    const raw = await hooks.load.promise({ pipeline, file, format, open, signal: controller.signal })
    if (raw === undefined) throw fileInvalid(file.path, `no plugin loads "${format.type}" files; add a format plugin for it`)
    const typed = coerceRows(raw, pipeline.columns, { file: file.path, unknownColumns: pipeline.unknownColumns })
    const transformed = await hooks.transform.promise(typed, { pipeline, file })
    const untransformed = hooks.transform.taps.length === 0
    const job: WriteJob = {
      pipeline: pipeline.name,
      table: tableSpec(pipeline),
      writeMode: pipeline.writeMode,
      file,
      loadId: lease.loadId,
      ingestedAt: isoInstant(new Date()),
      batches: counted(transformed, (rows) => hooks.fileProgress.call({ pipeline, file, rows }), controller.signal),
      ...(untransformed
        ? { source: { format, fields: raw.fields, headerLine: raw.headerLine, columns: pipeline.columns, unknownColumns: pipeline.unknownColumns, limits: pipeline.limits } }
        : {}),
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
    await lease.complete(result.rows)
    return { rows: result.rows }
  } catch (caught) {
    stop()
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
          await lease.complete(heal.rows, heal.healed)
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
  }
}
