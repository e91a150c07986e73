import { stat } from 'node:fs/promises'
import { coerceRows, type RejectedRecord } from '../columns/coerce.js'
import { NO_RECORD_TEXT } from '../config/row-controls.js'
import type { ResolvedConfig, ResolvedFormat, ResolvedPipeline } from '../config/types.js'
import type { FileRef } from '../destination.js'
import { FiledgeError, capMessage, describeError, fileInvalid, isFiledgeError } from '../errors.js'
import { csvFormat } from '../formats/csv.js'
import { fixedFormat } from '../formats/fixed.js'
import { jsonFormats } from '../formats/json.js'
import { parquetFormat } from '../formats/parquet.js'
import { xlsxFormat } from '../formats/xlsx.js'
import { detectFormat } from '../formats/registry.js'
import { createHooks, type Hooks } from '../hooks.js'
import { createLogger } from '../logger.js'
import { orderPlugins } from '../plugin.js'
import { toRelative } from '../source/local.js'
import { hashFile } from '../source/hash.js'
import { openLocalFile } from '../source/open.js'
import { NumberText, UnreadableValue, type RawRows } from '../rows.js'
import { runStages } from '../stages/run.js'
import { cdcChangeCheck, cdcRowCheck } from '../write-modes/cdc.js'
import { workerId } from './worker.js'

export interface ValidationFailure {
  readonly code: string
  readonly message: string
  readonly line?: number
  readonly column?: string
  readonly value?: unknown
}

export interface FileValidation {
  readonly path: string
  readonly pipeline: string
  readonly format?: string
  /** Records read (good and bad). */
  readonly rows: number
  /** Records with at least one failure. */
  readonly failedRows: number
  /** Every failure, up to the limit asked for. */
  readonly failures: readonly ValidationFailure[]
  /** Failures beyond the limit, counted but not kept. */
  readonly more: number
  /** Reading stopped early: the file cannot be parsed past this failure (the last one listed). */
  readonly stopped: boolean
  /**
   * The pipeline quarantines: the records a load would set aside, and
   * whether it would load the file (every failure is a record's own, and
   * they are within the limits) or fail it whole.
   */
  readonly quarantine?: { readonly records: number; readonly maxRows?: number; readonly maxFraction?: number; readonly loads: boolean }
}

/** Whether the file would load: no failure at all, or only records a quarantine would set aside. */
export function loads(report: FileValidation): boolean {
  return report.failures.length === 0 || report.quarantine?.loads === true
}

/**
 * Format plugins only: the built-ins and the config's plugins (which may add
 * formats). No ledger and no destination is opened, so validating writes
 * nothing anywhere.
 */
export async function formatHooks(config: ResolvedConfig): Promise<Hooks> {
  const hooks = createHooks()
  const worker = workerId()
  for (const plugin of orderPlugins(config.plugins, [csvFormat(), fixedFormat(), jsonFormats(), parquetFormat(), xlsxFormat()])) {
    await plugin.apply({ hooks, config, worker, logger: createLogger((entry) => hooks.log.call(entry), plugin.name) })
  }
  return hooks
}

function failureOf(error: FiledgeError): ValidationFailure {
  // A number kept as written (JSON, Parquet) is reported as written, an Excel error cell as it shows (#N/A).
  const value = error.value instanceof NumberText || error.value instanceof UnreadableValue ? error.value.text : error.value
  return { code: error.code, message: capMessage(error.message), line: error.line, column: error.column, value }
}

/**
 * Parses and coerces one file exactly as a run would, with the pipeline's
 * format and columns, but reports every bad value and record instead of
 * stopping at the first (a syntax error still ends the file: nothing after it
 * can be read reliably). In a cdc pipeline, the change checks a load runs
 * too: unknown op values, inserts and updates missing a required value, two
 * changes of one key with one sequence. In a pipeline with a quarantine,
 * what a load would do with the bad records: set them aside and load the
 * file, or fail it whole (`quarantine.loads`).
 */
export async function validateFile(hooks: Hooks, config: ResolvedConfig, pipeline: ResolvedPipeline, absPath: string, maxFailures: number): Promise<FileValidation> {
  const relative = toRelative(config.root, absPath)
  const failures: ValidationFailure[] = []
  let more = 0
  let records = 0
  let good = 0
  let stopped = false
  // Quarantine: records set aside, and failures no quarantine can set aside (they fail the file whole).
  let rejected = 0
  let fileLevel = 0
  const add = (error: FiledgeError) => {
    if (maxFailures > 0 && failures.length >= maxFailures) more++
    else failures.push(failureOf(error))
  }
  const format: ResolvedFormat | undefined = pipeline.format ?? detectFormat(relative)
  let release: (() => void) | undefined
  try {
    if (format === undefined) throw fileInvalid(relative, "cannot tell the format from the file's extension; set `format` on the pipeline")
    const { hash, size } = await hashFile(absPath)
    const { mtimeMs, ino } = await stat(absPath)
    const file: FileRef = { hash, size, version: `${mtimeMs}:${ino}`, modifiedAt: mtimeMs, path: relative }
    const raw = await hooks.load.promise({ pipeline, file, format, open: () => openLocalFile(absPath, file, { limits: pipeline.limits }), signal: new AbortController().signal, validating: true })
    if (raw === undefined) throw fileInvalid(relative, `no plugin loads "${format.type}" files`)
    if ('replayed' in raw) throw new FiledgeError('INTERNAL', `${relative}: a plugin replayed rows for validate, which must read the file`)
    release = () => raw.close?.()
    const counted: RawRows = {
      ...raw,
      batches: (async function* () {
        for await (const batch of raw.batches) {
          records += batch.records.length
          yield batch
        }
      })(),
    }
    const changes = pipeline.writeMode.kind === 'cdc' ? cdcRowCheck(pipeline.writeMode, relative) : undefined
    // A batch's coercion failures arrive while it is built, its change checks after: listed by line.
    const pending: FiledgeError[] = []
    const flush = () => {
      pending.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity)).forEach(add)
      pending.length = 0
    }
    // With a quarantine, records are checked as a load checks them: a record's own problems set it aside (counted),
    // what is left to the change checks (two changes of one key with one sequence) would fail the file.
    const quarantining = pipeline.quarantine !== undefined
    const reject = (record: RejectedRecord) => {
      rejected++
      pending.push(...record.errors)
    }
    const coercion = quarantining
      ? { onReject: reject, ...(pipeline.writeMode.kind === 'cdc' ? { rowCheck: cdcChangeCheck(pipeline.writeMode, relative, pipeline.columns.map((column) => column.name)) } : {}) }
      : { onInvalid: (error: FiledgeError) => void pending.push(error) }
    const coerced = (async function* () {
      for await (const batch of coerceRows(counted, pipeline.columns, { file: relative, unknownColumns: pipeline.unknownColumns, ...coercion })) {
        const unplaceable = changes?.(batch, (error) => pending.push(error)) ?? 0
        fileLevel += quarantining ? unplaceable : 0
        good += batch.rows.length - unplaceable
        flush()
        yield batch
      }
    })()
    try {
      // The good rows go through the pipeline's stages too: the first stage error (it fails a whole batch) stops the file, as it would a load.
      for await (const batch of pipeline.stages.length > 0 ? runStages(coerced, pipeline, file) : coerced) void batch
    } finally {
      flush()
    }
  } catch (error) {
    stopped = true
    add(isFiledgeError(error) ? error : new FiledgeError('FILE_INVALID', `${relative}: ${describeError(error)}`, { file: relative, cause: error }))
  } finally {
    release?.()
  }
  const quarantine = pipeline.quarantine
  const within = quarantine !== undefined && (quarantine.maxRows === undefined || rejected <= quarantine.maxRows) && (quarantine.maxFraction === undefined || records === 0 || rejected / records <= quarantine.maxFraction)
  const textless = format !== undefined && NO_RECORD_TEXT.has(format.type) && rejected > 0
  return {
    path: relative,
    pipeline: pipeline.name,
    format: format?.type,
    rows: records,
    failedRows: records - good,
    failures,
    more,
    stopped,
    ...(quarantine === undefined
      ? {}
      : {
          quarantine: {
            records: rejected,
            ...(quarantine.maxRows === undefined ? {} : { maxRows: quarantine.maxRows }),
            ...(quarantine.maxFraction === undefined ? {} : { maxFraction: quarantine.maxFraction }),
            loads: !stopped && fileLevel === 0 && within && !textless,
          },
        }),
  }
}
