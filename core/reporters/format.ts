import type { RunSummary } from '../hooks.js'

/** Built on first use: creating an Intl formatter loads ICU data, ~25–80 ms of every CLI start, even `--help`. */
let integer: Intl.NumberFormat | undefined

export function count(value: number): string {
  integer ??= new Intl.NumberFormat('en-US')
  return integer.format(value)
}

/** ` · 3 quarantined → .filedge/quarantine/orders/9f86….ndjson` after a committed file's rows, when its load set some aside. */
export function quarantinedNote(quarantined: number | undefined, sidecar: string | undefined): string {
  return quarantined === undefined || quarantined === 0 ? '' : ` · ${count(quarantined)} quarantined → ${sidecar ?? '?'}`
}

/** `1 row`, `2 rows`. */
export function rowCount(rows: number): string {
  return `${count(rows)} ${rows === 1 ? 'row' : 'rows'}`
}

export function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`
}

/** `committed 3 · failed 1 · skipped 2 · new 4 · reclaimed 0 · retried 1 · rows 1,234 · 0.42 s` */
export function formatSummary(summary: RunSummary): string {
  return [
    `committed ${count(summary.committed)}`,
    `failed ${count(summary.failed)}`,
    `skipped ${count(summary.skipped)}`,
    `new ${count(summary.new)}`,
    `reclaimed ${count(summary.reclaimed)}`,
    `retried ${count(summary.retried)}`,
    `rows ${count(summary.rows)}`,
    ...(summary.quarantined > 0 ? [`quarantined ${count(summary.quarantined)}`] : []),
    ...(summary.released > 0 ? [`released ${count(summary.released)}`] : []),
    ...(summary.healed > 0 ? [`healed ${count(summary.healed)}`] : []),
    ...(summary.sourceErrors > 0 ? [`sources failed ${count(summary.sourceErrors)}`] : []),
    seconds(summary.durationMs),
  ].join(' · ')
}

export function summaryJson(summary: RunSummary): Record<string, unknown> {
  const { aborted, ...counts } = summary
  return { ...counts, ...(aborted ? { aborted: aborted.toJSON() } : {}) }
}
