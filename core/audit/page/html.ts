import { auditClient } from './client.js'
import { duration, STATES, type Alert, type Bucket, type PageData } from './data.js'

/**
 * The audit page: one self-contained HTML file (inline CSS, script and
 * data; nothing fetched, so it opens offline and from a mail attachment).
 * The first screen is rendered here, as HTML, so it says what is wrong
 * before any script runs; the file list is built by the script from the
 * embedded data (client.ts).
 */

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** Text for HTML content and attribute values. */
export function esc(text: string): string {
  return text.replace(/[&<>"']/g, (char) => ESCAPES[char])
}

/**
 * The data as the content of a `<script type="application/json">`: every `<`
 * written as `\u003c` (JSON reads it back as `<`), so no string in it (a
 * path named `</script><script>…`, an error quoting one) can end the element
 * or open a comment; U+2028 and U+2029 escaped too.
 */
export function embedJson(value: unknown): string {
  return scriptSafeText(JSON.stringify(value))
}

const scriptSafeText = (json: string) => json.replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029')

const LINE_SEPARATOR = Buffer.from('\u2028')
const PARAGRAPH_SEPARATOR = Buffer.from('\u2029')

/**
 * JSON text as UTF-8 bytes, escaped as embedJson escapes it. Only a JSON
 * string can hold what it escapes, and in UTF-8 the byte of `<` is never
 * part of another character: text without any (most) is searched, then
 * kept as it is.
 */
export function scriptSafe(json: Uint8Array): Uint8Array {
  const bytes = Buffer.from(json.buffer, json.byteOffset, json.byteLength)
  if (bytes.indexOf(0x3c) === -1 && bytes.indexOf(LINE_SEPARATOR) === -1 && bytes.indexOf(PARAGRAPH_SEPARATOR) === -1) return json
  return Buffer.from(scriptSafeText(bytes.toString('utf8')))
}

const pad = (n: number) => String(n).padStart(2, '0')

export function utc(ms: number): string {
  const d = new Date(ms)
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`
}

const number = (n: number) => n.toLocaleString('en-US')

const ALERT_TITLES: Record<Alert['kind'], string> = { failing: 'Failing', stuck: 'Stuck', backlog: 'Backlog', late: 'Late', pond: 'Pond' }

function alertLink(alert: Alert, data: PageData): string {
  const index = data.pipelines.findIndex((pipeline) => pipeline.name === alert.pipeline)
  const state = { failing: 'FAILED', stuck: 'STUCK', backlog: 'PENDING', late: '', pond: '' }[alert.kind]
  if (index === -1 || state === '') return ''
  return ` <a href="#files?pipeline=${index}&amp;state=${state}">list&nbsp;them</a>`
}

function firstScreen(data: PageData): string {
  if (data.alerts.length === 0) {
    const files = data.pipelines.reduce((sum, pipeline) => sum + pipeline.files, 0)
    if (files === 0) return `<div class="all-clear" role="status"><strong>Nothing recorded yet.</strong> No file in the ledger; a run of <code>filedge</code> loads what the sources hold.</div>`
    return `<div class="all-clear" role="status"><strong>All clear.</strong> ${number(files)} files in ${data.pipelines.length} pipeline${data.pipelines.length === 1 ? '' : 's'}: nothing failing, stuck, backlogged or late.</div>`
  }
  const total = (kind: Alert['kind']) => data.alerts.filter((alert) => alert.kind === kind).reduce((sum, alert) => sum + alert.count, 0)
  const count = (kinds: (alert: Alert) => boolean, one: string, many: string) => {
    const n = new Set(data.alerts.filter(kinds).map((alert) => alert.pipeline)).size
    return n === 0 ? '' : `${n} ${n === 1 ? one : many}`
  }
  const where = [count((alert) => alert.kind !== 'pond', 'pipeline', 'pipelines'), count((alert) => alert.kind === 'pond', 'pond', 'ponds')].filter(Boolean).join(' and ')
  const parts = [
    total('failing') > 0 ? `${number(total('failing'))} files failing` : '',
    total('stuck') > 0 ? `${number(total('stuck'))} stuck` : '',
    total('backlog') > 0 ? `${number(total('backlog'))} pending` : '',
    data.alerts.some((alert) => alert.kind === 'late') ? `${data.alerts.filter((alert) => alert.kind === 'late').length} late` : '',
    data.alerts.some((alert) => alert.kind === 'pond') ? `${data.alerts.filter((alert) => alert.kind === 'pond').length} ponds failing` : '',
  ].filter(Boolean)
  const rows = data.alerts.map((alert) => {
    const what = alert.kind === 'late' ? 'no recent commit' : alert.kind === 'pond' ? 'last run' : `${number(alert.count)} file${alert.count === 1 ? '' : 's'}`
    const since = alert.since === null ? '' : `<time datetime="${new Date(alert.since).toISOString()}">${utc(alert.since)}</time> <span class="muted">(${duration(Math.max(0, data.now - alert.since))} ago)</span>`
    return `<tr class="alert alert-${alert.kind}"><td><span class="badge">${ALERT_TITLES[alert.kind]}</span></td><th scope="row">${esc(alert.pipeline)}</th><td class="num">${what}</td><td>${since}</td><td class="detail">${esc(alert.detail)}${alertLink(alert, data)}</td></tr>`
  })
  return `<p class="headline" role="alert"><strong>Needs attention:</strong> ${parts.join(', ')}, in ${where}.</p>
<table class="alerts"><thead><tr><th></th><th>Where</th><th class="num">What</th><th>Since</th><th>Detail</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
}

function pipelineTable(data: PageData): string {
  if (data.pipelines.length === 0) return '<p>No pipeline yet.</p>'
  const rows = data.pipelines.map((pipeline, index) => {
    const link = (state: string, n: number) => (n === 0 ? '0' : `<a href="#files?pipeline=${index}&amp;state=${state}">${number(n)}</a>`)
    const failed = pipeline.failed === 0 ? '0' : `${link('FAILED', pipeline.failed)} (${number(pipeline.terminal)} terminal)`
    const processing = pipeline.stuck === 0 ? number(pipeline.processing) : `${number(pipeline.processing)} (${link('STUCK', pipeline.stuck)} stuck)`
    return `<tr><th scope="row">${esc(pipeline.name)}${pipeline.table === undefined ? ' <span class="muted">(not in the config)</span>' : ''}</th><td class="num">${number(pipeline.files)}</td><td class="num">${link('COMMITTED', pipeline.committed)}</td><td class="num">${number(pipeline.rows)}</td><td class="num">${failed}</td><td class="num">${link('PENDING', pipeline.pending)}</td><td class="num">${processing}</td><td>${pipeline.lastCommitAt === null ? '' : utc(pipeline.lastCommitAt)}</td></tr>`
  })
  return `<table class="summary"><thead><tr><th>Pipeline</th><th>Files</th><th>Committed</th><th>Rows</th><th>Failed</th><th>Pending</th><th>Processing</th><th>Last commit</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
}

/** Bars over time, with a title per bar and the axis ends labelled. */
function barChart(title: string, buckets: readonly Bucket[], value: (bucket: Bucket) => number, unit: string, className: string): string {
  const width = 640
  const height = 140
  const max = Math.max(1, ...buckets.map(value))
  const step = buckets.length === 0 ? width : width / buckets.length
  const bars = buckets.map((bucket, index) => {
    const h = Math.round((value(bucket) / max) * (height - 20))
    return `<rect x="${(index * step + 1).toFixed(1)}" y="${height - h}" width="${Math.max(1, step - 2).toFixed(1)}" height="${h}"><title>${esc(utc(bucket.at))}: ${number(value(bucket))} ${esc(unit)}</title></rect>`
  })
  const first = buckets[0]
  const last = buckets.at(-1)
  return `<figure class="chart ${className}"><figcaption>${esc(title)} <span class="muted">max ${number(max)}</span></figcaption>
<svg viewBox="0 0 ${width} ${height + 16}" role="img" aria-label="${esc(title)}">${bars.join('')}<line x1="0" y1="${height}" x2="${width}" y2="${height}" class="axis"/>${
    first === undefined ? `<text x="${width / 2}" y="${height / 2}" text-anchor="middle">nothing yet</text>` : `<text x="0" y="${height + 14}">${esc(utc(first.at))}</text><text x="${width}" y="${height + 14}" text-anchor="end">${esc(utc(last!.at))}</text>`
  }</svg></figure>`
}

function reasonChart(data: PageData): string {
  const top = data.reasons.slice(0, 10)
  if (top.length === 0) return '<p class="muted">No failure recorded.</p>'
  const max = Math.max(...top.map((reason) => reason.failures))
  const rowHeight = 22
  const rows = top.map((reason, index) => {
    const w = Math.max(2, Math.round((reason.failures / max) * 200))
    return `<g transform="translate(0 ${index * rowHeight})"><rect x="0" y="3" width="${w}" height="${rowHeight - 6}"><title>${number(reason.failures)} failures</title></rect><text x="${w + 6}" y="${rowHeight - 7}">${number(reason.failures)} · ${esc(reason.reason.length > 110 ? `${reason.reason.slice(0, 110)}…` : reason.reason)}</text></g>`
  })
  return `<figure class="chart reasons"><figcaption>Failures by reason <span class="muted">(the file named in each is {file})</span></figcaption><svg viewBox="0 0 960 ${top.length * rowHeight}" role="img" aria-label="Failures by reason">${rows.join('')}</svg></figure>`
}

function lineage(data: PageData): string {
  const cards = data.pipelines
    .filter((pipeline) => pipeline.table !== undefined)
    .map((pipeline) => {
      const table = `"${pipeline.table!.replace(/"/g, '""')}"`
      const note =
        pipeline.writeMode === 'truncate'
          ? 'truncate: the table holds the newest committed file only; the earlier ones were replaced.'
          : pipeline.writeMode === 'cdc'
            ? 'cdc: the table holds the latest change per key from these files.'
            : 'append: the table holds the rows of every committed file.'
      const index = data.pipelines.indexOf(pipeline)
      return `<div class="lineage"><h3>${esc(pipeline.name)} → <code>${esc(pipeline.table!)}</code> <span class="muted">in ${esc(pipeline.destination ?? '')}</span></h3>
<p>${esc(note)} Made of <a href="#files?pipeline=${index}&amp;state=COMMITTED">${number(pipeline.committed)} committed files</a>, ${number(pipeline.rows)} rows. Every row carries its file's hash; a file's rows:</p>
<pre><code>SELECT * FROM ${esc(table)} WHERE _source_file_hash = '&lt;hash&gt;'</code></pre>
<p>and the files themselves: <code>filedge query "SELECT hash, path, rows, committed_at FROM files WHERE pipeline = '${esc(pipeline.name.replace(/'/g, "''"))}' AND state = 'COMMITTED' ORDER BY committed_at"</code></p></div>`
    })
  return cards.length === 0 ? '<p class="muted">No pipeline in the config.</p>' : cards.join('')
}

function pondTable(data: PageData): string {
  if (data.ponds.length === 0) return ''
  const rows = data.ponds.map((pond) => `<tr class="pond-${esc(pond.outcome ?? 'running')}"><th scope="row">${esc(pond.pond)}</th><td>${esc(pond.version)}</td><td>${esc(pond.outcome ?? 'running')}</td><td>${utc(pond.at)}</td><td class="error">${esc(pond.error ?? '')}</td></tr>`)
  return `<section id="ponds"><h2>Ponds</h2><table class="summary"><thead><tr><th>Pond</th><th>Version</th><th>Last run</th><th>Started</th><th>Error</th></tr></thead><tbody>${rows.join('')}</tbody></table></section>`
}

const STYLE = `
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #6a737d; --line: #d0d7de; --bg: #fff; --soft: #f6f8fa; --bad: #cf222e; --warn: #9a6700; --ok: #1a7f37; --bar: #0969da; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #8b949e; --line: #30363d; --bg: #0d1117; --soft: #161b22; --bad: #ff7b72; --warn: #d29922; --ok: #3fb950; --bar: #58a6ff; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 1.5rem; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; } h2 { font-size: 1.15rem; margin: 2rem 0 .75rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; } h3 { font-size: 1rem; margin: .5rem 0; }
.muted { color: var(--muted); font-weight: normal; }
code, pre, td.hash, td.path, .code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
pre { background: var(--soft); padding: .5rem .75rem; overflow-x: auto; }
.all-clear { border-left: 4px solid var(--ok); background: var(--soft); padding: .75rem 1rem; }
.headline { font-size: 1.05rem; margin: 0 0 .5rem; }
table.alerts { margin-bottom: 1rem; } table.alerts td, table.alerts th { background: var(--soft); }
.alert td:first-child { border-left: 4px solid var(--warn); } .alert-failing td:first-child, .alert-stuck td:first-child, .alert-pond td:first-child { border-left-color: var(--bad); }
.badge { display: inline-block; font-size: 11px; font-weight: 700; text-transform: uppercase; letter-spacing: .04em; }
.alert-failing .badge, .alert-stuck .badge, .alert-pond .badge { color: var(--bad); } .alert-late .badge, .alert-backlog .badge { color: var(--warn); }
.detail { color: var(--muted); overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.summary { width: auto; min-width: 60%; }
.controls { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin-bottom: .5rem; }
.controls input[type=search] { flex: 1 1 20rem; padding: .35rem .5rem; font: inherit; }
.controls select, .pager button { font: inherit; padding: .3rem .5rem; }
#file-table { font-size: 13px; }
#file-table th { cursor: pointer; user-select: none; white-space: nowrap; position: sticky; top: 0; background: var(--bg); }
#file-table th[aria-sort=ascending]::after { content: " ▲"; } #file-table th[aria-sort=descending]::after { content: " ▼"; }
#file-table td.path { overflow-wrap: anywhere; } #file-table td.error { color: var(--bad); max-width: 32rem; overflow-wrap: anywhere; }
#file-table tr[data-index] { cursor: pointer; } #file-table tr[data-index]:hover { background: var(--soft); }
tr.state-failed td.state, tr.state-stuck td.state { color: var(--bad); font-weight: 600; } tr.state-pending td.state { color: var(--warn); } tr.state-committed td.state { color: var(--ok); }
tr.details td { background: var(--soft); } tr.details dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: .25rem 0; } tr.details dt { color: var(--muted); } tr.details dd { margin: 0; overflow-wrap: anywhere; } tr.details dd.error { color: var(--bad); }
.pager { display: flex; gap: .5rem; align-items: center; margin-top: .5rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap: 1rem; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: .25rem; }
svg { width: 100%; height: auto; } svg text { font-size: 11px; fill: var(--muted); } svg rect { fill: var(--bar); } .failures svg rect, .reasons svg rect { fill: var(--bad); } svg .axis { stroke: var(--line); }
.reasons svg text { fill: var(--fg); }
.lineage { border: 1px solid var(--line); padding: .25rem 1rem; margin-bottom: .75rem; }
td.error { overflow-wrap: anywhere; }
noscript { display: block; color: var(--warn); }
`

/**
 * The page, complete, as UTF-8 bytes: the listed files' JSON, most of them,
 * goes in as DuckDB wrote it (data.ts, listedFiles), after the rest of the
 * data.
 */
export function renderPage(data: PageData): Buffer {
  const pipelineOptions = data.pipelines.map((pipeline, index) => `<option value="${index}">${esc(pipeline.name)}</option>`).join('')
  const stateOptions = [...STATES.slice(0, 1), 'STUCK', ...STATES.slice(1)].map((state) => `<option>${state}</option>`).join('')
  const listed = data.files.count
  const { files, ...rest } = data
  // The page up to the listed files' JSON, which goes in between as bytes, then the rest.
  const head = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>filedge audit — ${esc(data.ledger)}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>filedge audit</h1>
<div class="muted">Ledger ${esc(data.ledger)} · as of <time datetime="${new Date(data.now).toISOString()}">${utc(data.now)}</time> (the ledger's clock) · generated ${utc(data.generatedAt)}</div>
</header>
<section id="status"><h2>Now</h2>
${firstScreen(data)}
${pipelineTable(data)}
</section>
<section id="files"><h2>Files <span class="muted">${number(listed)} listed of ${number(data.filesTotal)}: every failing, stuck and pending one, then the latest to change</span></h2>
<noscript>The file list needs JavaScript; the rest of the page does not.</noscript>
<div class="controls">
<input type="search" id="file-search" placeholder="Search path, hash or error" aria-label="Search files">
<select id="file-pipeline" aria-label="Pipeline"><option value="">all pipelines</option>${pipelineOptions}</select>
<select id="file-state" aria-label="State"><option value="">all states</option>${stateOptions}</select>
<span id="file-count" class="muted" aria-live="polite"></span>
</div>
<table id="file-table"><thead><tr id="file-head"></tr></thead><tbody id="file-rows"></tbody></table>
<div class="pager" id="file-pager"><button type="button" data-page="prev">← previous</button><span class="page muted"></span><button type="button" data-page="next">next →</button></div>
</section>
<section id="charts"><h2>Over time <span class="muted">per ${data.buckets.unit}, UTC</span></h2>
<div class="charts">
${barChart(`Files committed per ${data.buckets.unit}`, data.buckets.list, (bucket) => bucket.files, 'files', 'files')}
${barChart(`Rows committed per ${data.buckets.unit}`, data.buckets.list, (bucket) => bucket.rows, 'rows', 'rows')}
${barChart(`Failures per ${data.buckets.unit}`, data.buckets.list, (bucket) => bucket.failures, 'failures', 'failures')}
</div>
${reasonChart(data)}
</section>
<section id="lineage"><h2>Lineage <span class="muted">which files each table is made of</span></h2>
${lineage(data)}
</section>
${pondTable(data)}
<script type="application/json" id="filedge-data">${embedJson(rest).slice(0, -1)},"files":`
  const tail = `}</script>
<script>(${auditClient.toString()})()</script>
</body>
</html>
`
  return Buffer.concat([Buffer.from(head), ...files.json.map(scriptSafe), Buffer.from(tail)])
}
