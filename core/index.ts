/**
 * filedge's public surface. Plugins and configs import from here (`filedge`);
 * everything not re-exported is internal.
 */
export { defineConfig, resolveConfig } from './config/resolve.js'
export { loadConfig, type LoadedConfig } from './config/load.js'
export { definePreset } from './config/presets.js'
export type {
  ColumnInput,
  ColumnSpec,
  ColumnType,
  CsvFormatOptions,
  Duration,
  FixedField,
  FixedFormatOptions,
  FormatInput,
  FormatOptions,
  LeaseConfig,
  LimitsConfig,
  PipelineDefaults,
  Preset,
  PresetOption,
  PipelineConfig,
  PluginOption,
  ResolvedColumn,
  ResolvedConfig,
  ResolvedFormat,
  ResolvedLedger,
  ResolvedLimits,
  ResolvedPipeline,
  ResolvedStage,
  RetryConfig,
  Size,
  SourceConfig,
  SymlinkPolicy,
  UserConfig,
  WriteMode,
  WriteModeName,
  XlsxFormatOptions,
  TruncateOptions,
  CdcOptions,
  ResolvedWriteMode,
  ResolvedCdc,
} from './config/types.js'
export { COLUMN_TYPES, WRITE_MODES } from './config/types.js'
export { toMs } from './config/duration.js'
export { toBytes } from './config/limits.js'
export { fsyncPath, writeDurably } from './durable.js'
export { RACY_MS } from './source/racy.js'
export { env, isEnvRef, readEnv, redact, type EnvRef, type MaybeEnv } from './secrets.js'
export {
  FiledgeError,
  isFiledgeError,
  rowInvalid,
  fileInvalid,
  schemaDrift,
  claimLost,
  destinationLocked,
  fileChanged,
  fileGone,
  pluginError,
  describeError,
  configInvalid,
  usageError,
  type ErrorCode,
  type ErrorDetails,
} from './errors.js'
export { definePlugin, type Plugin, type PluginContext } from './plugin.js'
export { stage, isStage, type JoinStageDefinition, type Stage, type StageContext, type StageDefinition, type StageInputs, type StageOutput, type StageRow } from './stages/stage.js'
export type {
  ArchiveRequest,
  ArchivedFile,
  ListRequest,
  PathRequest,
  ReadRequest,
  WatchChange,
  WatchRequest,
  BeforeHashResult,
  ClaimOutcome,
  ClaimRequest,
  ClaimedFile,
  CommittedFile,
  FailedFile,
  FileCandidate,
  FileProgress,
  QueueDepth,
  Hooks,
  Lease,
  LoadRequest,
  ParsedRowsContext,
  ReplayedRows,
  RunContext,
  SourceBytesContext,
  StageRowsRequest,
  RunSummary,
  SkipReason,
  SkippedFile,
  TransformContext,
} from './hooks.js'
export type { Destination, DestinationCapabilities, DestinationContext, FileRef, LoadMarker, LoadQuery, SourceLayout, SqlSession, WriteJob, WriteResult } from './destination.js'
export { LOAD_MARKER_ADDED_COLUMNS, LOAD_MARKER_COLUMNS, LOAD_MARKER_TABLE, markerValues, truncateMarker } from './load-marker.js'
export { batchSize, NumberText, PROVENANCE_COLUMNS, UnreadableValue, type RawBatch, type RawRows, type RowBatch, type StoredBatch, type StoredColumn, type TableColumn, type TableSpec, type Value } from './rows.js'
export { assertNoDrift, diffColumns, type ActualColumn, type DriftCheck } from './drift.js'
export { createSchemaIfMissing, inTransaction, quoteIdentifier, type SchemaClient, type TransactionClient } from './sql.js'
export { readClaimedBytes, type ClaimedBytes } from './source/verify.js'
export { detectFormat, isGzipPath } from './formats/registry.js'
export { canCheckCsvStructure, createCsvStructureCheck, type CsvStructureCheck, type CsvStructureOptions } from './formats/csv-structure.js'
export { createMutex, sleep, type Mutex } from './concurrency.js'
export { assertCreatable } from './health.js'
export {
  cdcPlan,
  cdcStageSpec,
  cdcTombstoneSpec,
  cdcTombstoneTable,
  withLines,
  CDC_LINE_COLUMN,
  type CdcCounts,
  type CdcDialect,
  type CdcPlan,
  type CdcTables,
  type SqlStatement,
} from './write-modes/cdc.js'
export { alreadyApplied, emptyTruncate, truncateLogTable, TRUNCATE_LOG_COLUMNS, type TruncateLoad } from './write-modes/truncate.js'
export { createLogger, type Logger, type LogEntry, type LogLevel } from './logger.js'
export { run, createFiledge, type RunOptions, type Filedge } from './runner/run.js'
export { tableSpec } from './runner/file.js'
export { openLedger } from './ledger/open.js'
export type { LedgerStore, LedgerFile, LedgerEvent, FileState, StatusReport, PondEvent, PondEventFilter, PondEventInput, PondEventName, PondTrigger, CursorAdvance, CursorAdvanceInput, CursorEvent, CursorEventName } from './ledger/types.js'
export { defineSource, type Source, type SourceEntry, type SourceCapabilities, type SourceContext, type ListOptions, type WatchOptions, type Watching, type ReadOptions, type ArchiveAction, type FileOrigin } from './source.js'
export { localSource, type LocalSourceOptions } from './source/local.js'
export type { LedgerSnapshot, ExportRequest, ExportPage, ExportFilter, ExportTable } from './ledger/export.js'
export { sourceMatcher, DEFAULT_EXCLUDES, type MatchOptions } from './source/match.js'
export { hashStage, normalizeCode, explainChange, STAGE_ABI, type StageHashInput, type StageHash } from './stages/hash.js'
export { decrypt, pseudonym, FRAME_VERSION } from './protect/frame.js'
