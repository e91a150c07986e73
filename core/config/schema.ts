import { z } from 'zod'
import { isEnvRef } from '../secrets.js'
import { isStage } from '../stages/stage.js'
import { SIZE_PATTERN } from './limits.js'
import { COLUMN_TYPES, SYMLINK_POLICIES } from './types.js'

// A config is validated once a run: zod's compiled fast path (code generated per schema with
// `new Function`, and a probe that eval is allowed) costs more to build than it saves.
z.config({ jitless: true })

/**
 * The config's shape. Every object is strict: an unknown key is an error
 * (a typo must not silently fall back to a default).
 */

const duration = z.union([
  z.number().int().positive(),
  z.string().regex(/^\d+(\.\d+)?(ms|s|m|h)$/, 'expected a duration like 500ms, 30s, 2m or 1h'),
])

const maybeEnvString = z.union([z.string().min(1), z.custom((value) => isEnvRef(value), 'expected a string or env("NAME")')])

/** A key is a reference to the environment: its value is never written in a config (which is committed, printed, shared). */
const secretKey = z.custom((value) => isEnvRef(value), 'expected env("NAME"): a key is read from the environment, never written in the config')
export const protectSchema = z.strictObject({ key: secretKey })

const column = z.preprocess(
  (value) => (typeof value === 'string' ? { type: value } : value),
  z.strictObject({
    type: z.enum(COLUMN_TYPES),
    required: z.boolean().optional(),
    source: z.string().min(1).optional(),
    precision: z.number().int().min(1).max(38).optional(),
    scale: z.number().int().min(0).max(38).optional(),
    encrypt: protectSchema.optional(),
    hash: protectSchema.optional(),
  }),
)

const singleChar = z.string().length(1, 'expected a single character')

export const csvFormatSchema = z.strictObject({
  type: z.literal('csv'),
  delimiter: singleChar.optional(),
  quote: singleChar.optional(),
  escape: singleChar.optional(),
  encoding: z.string().min(1).optional(),
  header: z.union([z.boolean(), z.array(z.string().min(1)).min(1)]).optional(),
  nullValues: z.array(z.string()).optional(),
})

/** NDJSON, JSON arrays and Parquet take no options today; strict objects still catch a misspelt key. */
export const jsonFormatSchema = z.strictObject({ type: z.enum(['ndjson', 'json']) })
export const parquetFormatSchema = z.strictObject({ type: z.literal('parquet') })

const position = (what: string) => z.number().refine(Number.isInteger, `expected a whole number of ${what}`).min(1, `expected 1 or more ${what}`)

export const xlsxFormatSchema = z.strictObject({
  type: z.literal('xlsx'),
  sheet: z.union([z.string().min(1, 'expected a sheet name or its 1-based position'), position('tabs (the first tab is 1)')]).optional(),
  header: position('rows (the first row is 1)').optional(),
})

/** Node's names for UTF-16LE (Buffer's `'utf16le'`), which TextDecoder does not know. */
const NODE_ENCODINGS: Readonly<Record<string, string>> = { utf16le: 'utf-16le', ucs2: 'utf-16le', 'ucs-2': 'utf-16le' }

function isEncoding(label: string): boolean {
  try {
    new TextDecoder(label)
    return true
  } catch {
    return false
  }
}

export const fixedFieldSchema = z.strictObject({
  name: z.string().min(1),
  start: position('characters (the first character of a line is 1)'),
  width: position('characters'),
})

export const fixedFormatSchema = z
  .strictObject({
    type: z.literal('fixed'),
    layout: z.array(fixedFieldSchema).min(1, 'expected at least one field: [{ name, start, width }]'),
    // Checked here, not when the first file arrives: a typo in the label is a config error.
    encoding: z
      .string()
      .transform((label) => NODE_ENCODINGS[label.toLowerCase()] ?? label)
      .refine(isEncoding, 'expected an encoding label: utf-8, latin1 (= windows-1252), utf-16le, …')
      .optional(),
    header: z.boolean().optional(),
  })
  .superRefine((format, ctx) => {
    const seen = new Map<string, number>()
    format.layout.forEach((field, index) => {
      const first = seen.get(field.name)
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: ['layout', index, 'name'], message: `"${field.name}" is already the name of layout[${first}]; names must be unique` })
      else seen.set(field.name, index)
    })
  })

/** Option schemas of the built-in formats, by type. */
export const BUILTIN_FORMAT_SCHEMAS = {
  csv: csvFormatSchema,
  ndjson: jsonFormatSchema,
  json: jsonFormatSchema,
  parquet: parquetFormatSchema,
  xlsx: xlsxFormatSchema,
  fixed: fixedFormatSchema,
} as const

const format = z.union([
  z.string().min(1),
  z.looseObject({ type: z.string().min(1) }),
])

const destination = z.custom(
  (value) =>
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { name?: unknown }).name === 'string' &&
    typeof (value as { prepare?: unknown }).prepare === 'function' &&
    typeof (value as { write?: unknown }).write === 'function',
  'expected a destination: sqlite({ path: "warehouse.db" }) in code, or { "type": "sqlite", "path": "warehouse.db" } in JSON',
)

const plugin = z.custom(
  (value) =>
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { name?: unknown }).name === 'string' &&
    typeof (value as { apply?: unknown }).apply === 'function',
  'expected a plugin: { name, apply(ctx) }',
)

const retry = z.strictObject({ attempts: z.number().int().min(1).max(1000).optional(), lapses: z.number().int().min(1).max(1000).optional() })
const lease = z.strictObject({ ttl: duration.optional(), heartbeat: duration.optional() })
const columns = z.record(z.string().min(1), column)
const opValues = z.array(z.string().min(1)).min(1, 'expected at least one op value')
export const cdcSchema = z.strictObject({
  keys: z.array(z.string().min(1)).min(1, 'expected at least one key column'),
  op: z.string().min(1),
  sequence: z.string().min(1),
  ops: z.strictObject({ insert: opValues.optional(), update: opValues.optional(), delete: opValues.optional() }),
})
export const truncateSchema = z.strictObject({ allowEmpty: z.boolean().optional() })
/**
 * `'cdc'` alone passes here so that resolve can say what it is missing; the
 * object form is one strict object (not a union of two) so that a misspelt
 * mode gets "did you mean" like any other key.
 */
const writeMode = z.union([
  z.enum(['append', 'truncate', 'cdc']),
  z
    .strictObject({ truncate: truncateSchema.optional(), cdc: cdcSchema.optional() })
    .refine((mode) => (mode.truncate === undefined) !== (mode.cdc === undefined), "expected 'append', 'truncate', { truncate: { allowEmpty } } or { cdc: { keys, op, sequence, ops } }"),
])
const size = z.union([z.number().int().positive(), z.string().regex(SIZE_PATTERN, 'expected a number of bytes or a size like 512KiB, 64MiB or 2GiB')])
const count = z.number().int().positive()
export const limitsSchema = z.strictObject({
  maxFieldChars: count.optional(),
  maxRecordChars: count.optional(),
  maxColumns: count.optional(),
  gzipMaxRatio: z.number().min(1).optional(),
  gzipRatioGraceBytes: size.optional(),
  parquetMaxFileBytes: size.optional(),
  parquetMaxRowGroupBytes: size.optional(),
  xlsxMaxSharedStringsBytes: size.optional(),
})
export const quarantineSchema = z.strictObject({
  maxRows: z.number().int().min(0).optional(),
  maxFraction: z.number().min(0).max(1).optional(),
  dir: z.string().min(1).optional(),
  key: secretKey.optional(),
})
const unknownColumns = z.enum(['error', 'ignore'])
const batchSize = z.number().int().min(1).max(1_000_000)
const concurrency = z.number().int().min(1).max(256)

/**
 * A source never reaches outside its directory (the watcher ignores any path
 * there already): a run with `include: ['../other/*.csv']` would otherwise
 * glob and load files next to the drop folder. Refused wherever `..` can be a
 * path segment, brace and extglob alternatives included, and so are absolute
 * patterns (`/…`, `C:/…`, `\\server\…`), which fast-glob reads as they are,
 * whatever `cwd` is. A single leading backslash is an escape (`\[draft]*.csv`).
 */
const ESCAPING_PATTERN = /(^|[/{,(|])\.\.($|[/},)|])|^(\/|\\\\|[A-Za-z]:[/\\])/
const includePattern = z
  .string()
  .min(1)
  .refine((pattern) => !ESCAPING_PATTERN.test(pattern), 'a pattern must stay inside source.dir (no ".." segment, not absolute); point source.dir at the common parent instead')

/** A source plugin's object, checked by shape like a destination. */
const sourceObject = z.custom(
  (value) =>
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { name?: unknown }).name === 'string' &&
    typeof (value as { list?: unknown }).list === 'function' &&
    typeof (value as { read?: unknown }).read === 'function',
  'expected a source: a directory, { dir, include, … }, or a source plugin such as s3({ bucket })',
)

const onCommitted = z.union([z.enum(['keep', 'delete']), z.strictObject({ moveTo: z.string().min(1) })])

/**
 * A stage as `stage()` returns it: checked by shape here (its name, columns
 * and run), by resolve for what only the whole list can tell (unique names,
 * `from`, cycles, the last stage).
 */
export const stageSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'expected letters, digits, "_" or "-"'),
  from: z.union([z.string().min(1), z.array(z.string().min(1)).min(1, 'expected at least one stage name')]).optional(),
  columns: columns.refine((value) => Object.keys(value).length > 0, 'expected at least one column').optional(),
  run: z.custom<(...args: never[]) => unknown>((value) => typeof value === 'function', 'expected a function: (rows, context) => rows, or (inputs, context) => rows with several parents'),
  inputs: z.record(z.string(), z.unknown()).optional(),
  cache: z.boolean().optional(),
  definedIn: z.string().optional(),
})

const pipeline = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'expected letters, digits, "_", "-" or "."'),
  onCommitted: onCommitted.optional(),
  source: z.union([
    z.string().min(1),
    z.strictObject({
      dir: z.string().min(1),
      include: z.array(includePattern).min(1).optional(),
      exclude: z.array(z.string().min(1)).optional(),
      readyMarker: z.string().regex(/^[^/\\]+$/, 'expected a file-name suffix such as ".ok"').optional(),
      followSymlinks: z.enum(SYMLINK_POLICIES).optional(),
    }),
    sourceObject,
  ]),
  format: format.optional(),
  destination,
  table: z.string().min(1),
  writeMode: writeMode.optional(),
  columns: columns.refine((value) => Object.keys(value).length > 0, 'expected at least one column'),
  unknownColumns: unknownColumns.optional(),
  retry: retry.optional(),
  batchSize: batchSize.optional(),
  limits: limitsSchema.optional(),
  quarantine: quarantineSchema.optional(),
  stages: z.array(z.custom((value) => isStage(value), 'expected a stage: stage({ name, run }) from filedge').pipe(stageSchema)).optional(),
})

export const configSchema = z.strictObject({
  root: z.string().min(1).optional(),
  ledger: maybeEnvString.optional(),
  lease: lease.optional(),
  concurrency: concurrency.optional(),
  limits: limitsSchema.optional(),
  watch: z.union([z.boolean(), z.strictObject({ enabled: z.boolean().optional(), settle: duration.optional(), poll: duration.optional() })]).optional(),
  plugins: z.array(plugin).optional(),
  pipelines: z.array(pipeline).min(1, 'expected at least one pipeline'),
})

/** A preset after its plugins were flattened; `extends` entries are checked one by one as they are visited. */
export const presetSchema = z.strictObject({
  name: z.string().min(1),
  extends: z.array(z.unknown()).optional(),
  ledger: maybeEnvString.optional(),
  lease: lease.optional(),
  concurrency: concurrency.optional(),
  limits: limitsSchema.optional(),
  plugins: z.array(plugin).optional(),
  disablePlugins: z.array(z.string().min(1)).optional(),
  defaults: z
    .strictObject({
      format: format.optional(),
      destination: destination.optional(),
      writeMode: writeMode.optional(),
      retry: retry.optional(),
      batchSize: batchSize.optional(),
      unknownColumns: unknownColumns.optional(),
      columns: columns.optional(),
    })
    .optional(),
})
