import type { Destination } from '../destination.js'
import type { ArchiveAction, Source } from '../source.js'
import type { Plugin } from '../plugin.js'
import type { TableColumn } from '../rows.js'
import type { EnvRef, MaybeEnv } from '../secrets.js'
import type { Stage, StageContext, StageInputs, StageOutput, StageRow } from '../stages/stage.js'

/** Column types a pipeline can declare. See the coercion table in the README. */
export const COLUMN_TYPES = ['string', 'integer', 'float', 'decimal', 'boolean', 'date', 'timestamp', 'json'] as const
export type ColumnType = (typeof COLUMN_TYPES)[number]

export interface ColumnSpec {
  type: ColumnType
  /** A null or empty value fails the file. Default false. */
  required?: boolean
  /** The column's name in the file, when it differs from the destination column name. */
  source?: string
  /** decimal only: total digits (default 38). */
  precision?: number
  /** decimal only: digits after the point (default 9). A value with more digits fails; it is never rounded. */
  scale?: number
  /**
   * Store the value encrypted: AES-256-GCM, a fresh nonce per value, as a
   * versioned frame `fe1:<key id>:<base64>` (docs/row-controls.md). The
   * column is checked as its `type`, then stored as text; NULL stays NULL.
   * `filedge decrypt` or `decrypt()` reads it back. The key comes from the
   * environment: `encrypt: { key: env('PII_KEY') }`.
   */
  encrypt?: ProtectOptions
  /**
   * Store HMAC-SHA256 of the value (64 hex digits) instead of the value: a
   * pseudonym that joins across tables loaded with the same key, and that
   * nobody without the key can link back. NULL stays NULL.
   */
  hash?: ProtectOptions
}

export interface ProtectOptions {
  /** 32 bytes as 64 hex digits or base64, from the environment: `env('PII_KEY')`. Never written in a config. */
  key: EnvRef
}

export type ColumnInput = ColumnType | ColumnSpec

/** `500`, `'500ms'`, `'30s'`, `'2m'`, `'1h'`; a bare number is milliseconds. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h'}`

/** `1048576`, `'512KiB'`, `'64MiB'`, `'2GiB'`; a bare number is bytes. */
export type Size = number | `${number}${'B' | 'KiB' | 'MiB' | 'GiB' | 'TiB'}`

/**
 * How much one file may make filedge hold or produce. A file past a limit
 * fails alone (FILE_INVALID, naming the key); the other files go on. Text
 * limits count characters of decoded text; gzip and Parquet limits count
 * bytes. See "Limits" in the README for the defaults and why.
 */
export interface LimitsConfig {
  /** One CSV field. Default 64 Mi (67,108,864) characters. */
  maxFieldChars?: number
  /** One NDJSON line or JSON array element. Default 64 Mi characters. */
  maxRecordChars?: number
  /** Fields of a CSV header or record, columns of a Parquet file. Default 16,384. */
  maxColumns?: number
  /** A `.gz` file's decompressed size ÷ its compressed size. Default 200. */
  gzipMaxRatio?: number
  /** Decompressed output up to which `gzipMaxRatio` is not applied. Default `'256MiB'`. */
  gzipRatioGraceBytes?: Size
  /** A Parquet file (after gunzip, for `.parquet.gz`), held in memory while it loads. Default `'2GiB'`. */
  parquetMaxFileBytes?: Size
  /** One Parquet row group once decoded, estimated from its page headers before decoding. Default `'2GiB'`. */
  parquetMaxRowGroupBytes?: Size
  /** An Excel workbook's shared strings (`xl/sharedStrings.xml`, uncompressed), held in memory while a sheet loads. Default `'256MiB'`. */
  xlsxMaxSharedStringsBytes?: Size
}

export interface ResolvedLimits {
  readonly maxFieldChars: number
  readonly maxRecordChars: number
  readonly maxColumns: number
  readonly gzipMaxRatio: number
  readonly gzipRatioGraceBytes: number
  readonly parquetMaxFileBytes: number
  readonly parquetMaxRowGroupBytes: number
  readonly xlsxMaxSharedStringsBytes: number
}

export interface CsvFormatOptions {
  type: 'csv'
  /** One character. Default `,` (`\t` for `.tsv` files). */
  delimiter?: string
  /** One character. Default `"`. */
  quote?: string
  /** Escapes a quote inside a quoted field. Default: the quote character (`""`). */
  escape?: string
  /** Any WHATWG encoding label: `utf-8` (default), `latin1`, `windows-1252`, `utf-16le`… */
  encoding?: string
  /** `true`: the first record names the fields (default). `false`: fields are the declared columns' source names, in order. Or the field names. */
  header?: boolean | string[]
  /** Field values that mean NULL, besides an empty unquoted field. E.g. `['NULL', '\\N']`. */
  nullValues?: string[]
}

/** An Excel workbook (`.xlsx`): one sheet of it, read as a table under a header row. */
export interface XlsxFormatOptions {
  type: 'xlsx'
  /** The sheet's name, or its 1-based position among the workbook's tabs (hidden ones count). Default 1: the first tab. */
  sheet?: string | number
  /** The 1-based row that names the fields; rows above it are skipped. Default 1. */
  header?: number
}

/** One field of a fixed-width line. */
export interface FixedField {
  /** The field's name, as a column's `source` refers to it. */
  name: string
  /** 1-based position of its first character, as layouts print it (`31` for a field in columns 31–40). */
  start: number
  /** Characters it spans (Unicode code points, not bytes). */
  width: number
}

/** Fixed-width text: every line holds its fields at the same character positions. */
export interface FixedFormatOptions {
  type: 'fixed'
  layout: FixedField[]
  /** Any WHATWG encoding label: `utf-8` (default), `latin1` (= windows-1252), `utf-16le` (Node's `utf16le` too)… */
  encoding?: string
  /** `true`: the first line is a header (not read as data; the layout names the fields). Default false. */
  header?: boolean
}

export type FormatOptions = CsvFormatOptions | XlsxFormatOptions | FixedFormatOptions | ({ type: string } & Record<string, unknown>)
export type FormatInput = string | FormatOptions

export interface SourceConfig {
  /** Directory to scan, relative to the config file. */
  dir: string
  /** Glob patterns relative to `dir`. Default: every file of a format filedge knows. */
  include?: string[]
  /** Glob patterns to skip, on top of the defaults (dotfiles, `*.tmp`, `*.part`, `*.crdownload`, Office's `~$` owner files). */
  exclude?: string[]
  /**
   * For producers that signal completion with a marker file: a data file is
   * loaded only once `<file><readyMarker>` exists, e.g. `'.ok'` for
   * `orders.csv.ok` next to `orders.csv`.
   */
  readyMarker?: string
  /**
   * Which symbolic links in `dir` are followed. `'inside'` (default): only
   * those whose real path is inside `dir`; a link out of it is skipped with a
   * warning and its target is never opened (rsync's `--safe-links`), so a
   * link to `/etc/passwd` dropped in the folder is not loaded. `'all'`: every
   * link, for a folder that links in files kept elsewhere.
   */
  followSymlinks?: SymlinkPolicy
}

export const SYMLINK_POLICIES = ['inside', 'all'] as const
export type SymlinkPolicy = (typeof SYMLINK_POLICIES)[number]

export interface RetryConfig {
  /** How many times a file may be attempted before it is terminal (skipped until `filedge requeue`). Default 3. */
  attempts?: number
  /**
   * How many times in a row a file's lease may expire (its worker died or
   * froze while loading it) before it is terminal. Lapses are not attempts:
   * a crash elsewhere says nothing about the file. Default 5.
   */
  lapses?: number
}

/** The write modes by name, as a destination declares them in `capabilities.writeModes`. */
export const WRITE_MODES = ['append', 'truncate', 'cdc'] as const
export type WriteModeName = (typeof WRITE_MODES)[number]

export interface TruncateOptions {
  /**
   * Let an empty or header-only file empty the table. Default false: such a
   * file fails instead (an empty export is more often a broken producer than
   * a real "no rows").
   */
  allowEmpty?: boolean
}

/** Change files: inserts, updates and deletes of rows identified by business keys. See "Write mode: cdc" in the README. */
export interface CdcOptions {
  /** Declared columns that identify a row (its business key). */
  keys: string[]
  /** Declared `string` column saying what the change is; it is not stored in the table. */
  op: string
  /** Declared column ordering the changes of a key (integer, float, decimal, date, timestamp or string), compared by its type. */
  sequence: string
  /** Which op values mean what. A value that is in no list fails its file. */
  ops: { insert?: string[]; update?: string[]; delete?: string[] }
}

/**
 * - `'append'` (default): each file adds its rows.
 * - `'truncate'` or `{ truncate: { allowEmpty } }`: each file replaces the table's contents.
 * - `{ cdc: { keys, op, sequence, ops } }`: each file is a set of changes applied by key.
 */
export type WriteMode = 'append' | 'truncate' | { truncate: TruncateOptions } | { cdc: CdcOptions }

/**
 * What happens to a file's copy in its source once the ledger's COMMITTED is
 * durable (Auto Loader's `cleanSource`): `'keep'` (default), `'delete'`, or
 * `{ moveTo }`, a folder (or key prefix) of the same source, outside what it
 * lists, where the file keeps its path relative to the source's root.
 */
export type OnCommitted = 'keep' | 'delete' | { moveTo: string }

/**
 * Rows that fail coercion go to a sidecar file (NDJSON, one per file, named
 * by its hash) instead of failing their file, while there are no more of
 * them than `maxRows` and no larger a share than `maxFraction`. Strictly more
 * fails the file whole: nothing is loaded. See docs/row-controls.md.
 */
export interface QuarantineConfig {
  /** Most bad rows one file may set aside; `maxRows: 100` loads a file with 100 of them, fails one with 101. */
  maxRows?: number
  /** Most bad rows as a share of the file's records, 0 to 1: `0.01` lets 1 in 100 through, not 2. */
  maxFraction?: number
  /** Where sidecars go, relative to the config's directory. Default: `quarantine/` next to a SQLite ledger; `.filedge/quarantine` with a Postgres ledger. */
  dir?: string
  /**
   * Seals each bad record's text in the sidecar (the same frame as `encrypt`).
   * Required when the pipeline has `encrypt` or `hash` columns: their clear
   * values are in the record, and must not land in the sidecar as they are.
   */
  key?: EnvRef
}

export interface PipelineConfig {
  /** Unique, stable name: the ledger keys files by (pipeline, hash). */
  name: string
  /** A local directory (`'incoming'`, or `{ dir, include, … }`), or a source plugin's object: `s3({ bucket })`, `sftp({ … })`. */
  source: SourceConfig | string | Source
  /** What happens to the source's copy of a committed file. Default `'keep'`. */
  onCommitted?: OnCommitted
  /** Default: detected per file from its extension. */
  format?: FormatInput
  /** Required, unless a preset's `defaults.destination` provides one. */
  destination?: Destination
  /** Destination table name, used verbatim (quoted). */
  table: string
  writeMode?: WriteMode
  columns: Record<string, ColumnInput>
  /** A file field that no column declares: `'error'` fails the file (default), `'ignore'` drops the field. */
  unknownColumns?: 'error' | 'ignore'
  retry?: RetryConfig
  /** Rows per batch handed to transforms and the destination. Default 2,000. */
  batchSize?: number
  /** This pipeline's limits, key by key over the top-level `limits`. */
  limits?: LimitsConfig
  /** Set bad rows aside instead of failing their file, up to a limit. Off by default: a bad row fails its file. */
  quarantine?: QuarantineConfig
  /**
   * Transformations of the parsed rows, `stage({ name, run, columns? })`,
   * run in order (or as `from` says); the table's columns are the last
   * stage's. Each load records the stages' hash, so `filedge reload --stale`
   * reloads exactly the files an edit made stale.
   */
  stages?: Stage[]
}

export interface LeaseConfig {
  /** How long a claim holds a file without a heartbeat. Default `'60s'`. */
  ttl?: Duration
  /** How often a worker renews its lease while a file loads. Default: a third of `ttl`. */
  heartbeat?: Duration
}

export type PluginOption = Plugin | false | null | undefined | PluginOption[]

/** Pipeline settings a preset supplies; a pipeline's own settings win (format options and columns merge key by key). */
export interface PipelineDefaults {
  format?: FormatInput
  destination?: Destination
  writeMode?: WriteMode
  retry?: RetryConfig
  batchSize?: number
  unknownColumns?: 'error' | 'ignore'
  /** Columns every pipeline gets (a convention such as a tenant column); a pipeline's own column of the same name wins. */
  columns?: Record<string, ColumnInput>
}

/**
 * A shareable bundle: plugins, top-level settings and pipeline defaults,
 * published as an npm package or kept in the repo. Resolved depth-first
 * through `extends`; later presets win, and the config itself wins over all.
 */
export interface Preset {
  /** Unique; used to de-duplicate diamonds and to report cycles. */
  name: string
  extends?: PresetOption[]
  ledger?: MaybeEnv
  lease?: LeaseConfig
  concurrency?: number
  /** Merged key by key; the config's own `limits` win. */
  limits?: LimitsConfig
  plugins?: PluginOption[]
  /** Removes plugins (by name) that earlier presets in the chain added. */
  disablePlugins?: string[]
  defaults?: PipelineDefaults
}

/** A preset value, or the name of an npm package (or a relative path) whose default export is one. */
export type PresetOption = Preset | string | false | null | undefined

export interface UserConfig {
  /** Where relative paths start. Default: the directory of the config file. */
  root?: string
  /** `'sqlite:.filedge/ledger.db'` (default) or a `postgres://` URL, usually `env('FILEDGE_LEDGER_URL')`. */
  ledger?: MaybeEnv
  lease?: LeaseConfig
  /** Files in flight per pipeline. Default 4. */
  concurrency?: number
  /** For every pipeline; a pipeline's own `limits` win key by key. */
  limits?: LimitsConfig
  /**
   * `true` (or `{ enabled: true }`): keep running and load files as they land,
   * as `--watch` does. `settle`: how long a file's size must stay unchanged
   * before it counts as written (default `'500ms'`). `poll`: how often a
   * source without change events (S3, SFTP) is listed again (default
   * `'10s'`). Both apply to `--watch` without enabling watching by themselves.
   */
  watch?: boolean | { enabled?: boolean; settle?: Duration; poll?: Duration }
  /** Applied in order before this config; see Preset. */
  presets?: PresetOption[]
  plugins?: PluginOption[]
  /** Removes plugins (by name) that presets added. */
  disablePlugins?: string[]
  pipelines: PipelineConfig[]
}

export interface ResolvedColumn {
  readonly name: string
  readonly source: string
  /** What coercion checks. A protected column is stored as text whatever its type (see `storedColumn`). */
  readonly type: ColumnType
  readonly required: boolean
  readonly precision?: number
  readonly scale?: number
  readonly protect?: ColumnProtection
}

/** A protected column's treatment. The key is read from the environment when a load starts, never kept here. */
export interface ColumnProtection {
  readonly kind: 'encrypt' | 'hash'
  /** The reference (`env('PII_KEY')`); it prints as `env(PII_KEY)`. */
  readonly key: EnvRef
  /** The key's id (keys.ts), when its variable was set as the config was resolved. */
  readonly keyId?: string
}

export interface ResolvedQuarantine {
  readonly maxRows?: number
  readonly maxFraction?: number
  /** Absolute: sidecars are `<dir>/<pipeline>/<file hash>.ndjson`. */
  readonly dir: string
  /** Seals records' text in sidecars; set whenever the pipeline has protected columns. */
  readonly key?: EnvRef
  readonly keyId?: string
}

export interface ResolvedFormat {
  readonly type: string
  readonly options: Readonly<Record<string, unknown>>
}

export interface ResolvedPipeline {
  readonly name: string
  /** The built-in local source for `source: 'dir'` or `{ dir, … }`; the plugin's object otherwise. */
  readonly source: Source
  /** The include patterns of the pipeline's format(s), for a source given none (SourceContext.defaultInclude). */
  readonly defaultInclude: readonly string[]
  /** Undefined: keep the source's copy. */
  readonly onCommitted?: ArchiveAction
  /** Undefined: detect per file from its extension. */
  readonly format?: ResolvedFormat
  readonly destination: Destination
  readonly table: string
  readonly writeMode: ResolvedWriteMode
  /** What coercion checks. In a cdc pipeline `required` holds for keys, op and sequence only; see ResolvedCdc.changeColumns. */
  readonly columns: readonly ResolvedColumn[]
  readonly unknownColumns: 'error' | 'ignore'
  readonly retry: { readonly attempts: number; readonly lapses: number }
  readonly batchSize: number
  /** What one file may make a format hold or produce: the defaults, then the top-level `limits`, then the pipeline's. */
  readonly limits: ResolvedLimits
  /** Files in flight (append mode): the config's `concurrency`, else what the destination asks for, else 4. */
  readonly concurrency: number
  /** The pipeline's stages in an order they can run in (each after the stages it reads; the last feeds the table); empty without stages. */
  readonly stages: readonly ResolvedStage[]
  /** The table's columns: the last stage's output, else `columns` as stored (protected ones as text). */
  readonly tableColumns: readonly ResolvedColumn[]
  /** Undefined: a bad row fails its file. */
  readonly quarantine?: ResolvedQuarantine
}

export interface ResolvedStage {
  readonly name: string
  /** The stages it reads, in `from` order: at least one; `'parsed'` is the file's parsed rows. */
  readonly from: readonly string[]
  /** `from` was an array: run gets `{ [parent]: rows }` rather than rows. */
  readonly keyed: boolean
  /** The columns it returns: declared, or the ones it receives. */
  readonly columns: readonly ResolvedColumn[]
  /** Whether `columns` was declared (its output is then checked against them). */
  readonly declared: boolean
  /** Takes rows, or (keyed) the parents' rows by name. */
  readonly run: (input: StageRow[] | StageInputs, context: StageContext) => StageOutput
  readonly inputs: Readonly<Record<string, unknown>>
  /** Its output is kept per file by the cache plugin (`stage({ cache: true })`). */
  readonly cache: boolean
  readonly definedIn?: string
}

export type ResolvedWriteMode = { readonly kind: 'append' } | { readonly kind: 'truncate'; readonly allowEmpty: boolean } | ResolvedCdc

export interface ResolvedCdc {
  readonly kind: 'cdc'
  readonly keys: readonly string[]
  readonly op: string
  readonly sequence: string
  readonly ops: { readonly insert: readonly string[]; readonly update: readonly string[]; readonly delete: readonly string[] }
  /**
   * A change record's columns in the pipeline's order, the op column
   * included: the layout of a cdc job's batches. `required` is true for the
   * keys, op and sequence, and for every column the pipeline declares
   * required, which inserts and updates must fill and deletes need not.
   */
  readonly changeColumns: readonly TableColumn[]
  /** How messages name a column: its name, or `source (→ name)` when the file calls it otherwise. */
  readonly labels?: Readonly<Record<string, string>>
}

export type ResolvedLedger =
  | { readonly kind: 'sqlite'; readonly path: string }
  | { readonly kind: 'postgres'; readonly url: string; readonly schema: string }

export interface ResolvedConfig {
  readonly root: string
  readonly configFile?: string
  readonly ledger: ResolvedLedger
  readonly lease: { readonly ttlMs: number; readonly heartbeatMs: number }
  readonly concurrency: number
  readonly watch: { readonly enabled: boolean; readonly settleMs: number; readonly pollMs: number }
  readonly plugins: readonly Plugin[]
  /** Built-in plugins removed with `disablePlugins` (`filedge:stat-cache`). */
  readonly disabledBuiltins: readonly string[]
  /** Where set values came from (`config`, `preset "acme"`), by key path; a key absent here has its default. See `filedge config`. */
  readonly origins: Readonly<Record<string, string>>
  readonly pipelines: readonly ResolvedPipeline[]
  /** Not errors, but worth saying (a `disablePlugins` name that matched nothing). The CLI prints them. */
  readonly warnings: readonly string[]
}

export type { EnvRef }
