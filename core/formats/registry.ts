import type { ResolvedFormat } from '../config/types.js'

/**
 * Formats filedge knows out of the box, and the file extensions that select
 * them when a pipeline does not name a format. Any of them may be gzipped
 * (`.csv.gz`): decompression happens below the format, in `openSource`.
 */
export interface FormatInfo {
  readonly extensions: readonly string[]
}

export const BUILTIN_FORMATS: Readonly<Record<string, FormatInfo>> = Object.freeze({
  csv: { extensions: ['.csv', '.tsv'] },
  ndjson: { extensions: ['.ndjson', '.jsonl'] },
  json: { extensions: ['.json'] },
  parquet: { extensions: ['.parquet'] },
  xlsx: { extensions: ['.xlsx'] },
  // None: `.txt` and `.dat` files are as often CSV or free text. A fixed-width pipeline names its format and lists its files.
  fixed: { extensions: [] },
})

/** Named shorthands: `format: 'tsv'` is CSV with a tab delimiter. */
const ALIASES: Readonly<Record<string, ResolvedFormat>> = Object.freeze({
  tsv: { type: 'csv', options: { delimiter: '\t' } },
})

export function formatAlias(name: string): ResolvedFormat | undefined {
  return ALIASES[name]
}

const GZIP_SUFFIX = '.gz'

export function isGzipPath(path: string): boolean {
  return path.toLowerCase().endsWith(GZIP_SUFFIX)
}

/** The format a file's name implies, or undefined when the extension means nothing to filedge. */
export function detectFormat(path: string): ResolvedFormat | undefined {
  let name = path.toLowerCase()
  if (name.endsWith(GZIP_SUFFIX)) name = name.slice(0, -GZIP_SUFFIX.length)
  if (name.endsWith('.tsv')) return ALIASES.tsv
  for (const [type, info] of Object.entries(BUILTIN_FORMATS)) {
    if (info.extensions.some((extension) => name.endsWith(extension))) return { type, options: {} }
  }
  return undefined
}

/** Default `include` globs: every extension of the given formats, plain and gzipped. */
export function defaultIncludes(types: readonly string[]): string[] {
  const patterns: string[] = []
  for (const type of types) {
    for (const extension of BUILTIN_FORMATS[type]?.extensions ?? []) {
      patterns.push(`**/*${extension}`, `**/*${extension}${GZIP_SUFFIX}`)
    }
  }
  return patterns
}
