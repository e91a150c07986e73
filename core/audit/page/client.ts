import type { EmbeddedPageData } from './data.js'

/**
 * The audit page's script: the file list's search, filters, sorting,
 * pagination and details. It runs in the browser, inlined into the page as
 * this function's source (html.ts), so it uses nothing from outside itself.
 * The list is paginated (50 files a page) and filtering works on arrays of
 * indices built once, so 100,000 listed files filter and sort in tens of
 * milliseconds and the page never holds more than a page of rows in the DOM.
 */

// The browser's globals, for this function alone (filedge's own types are Node's).
declare const document: any
declare const window: any

export function auditClient(): void {
  const data = JSON.parse(document.getElementById('filedge-data').textContent) as EmbeddedPageData
  const files = data.files
  const count = files.path.length
  const PAGE = 50
  const STUCK = 'STUCK'
  const pad = (n: number) => String(n).padStart(2, '0')
  const when = (ms: number | null) => {
    if (ms === null) return ''
    const d = new Date(ms)
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`
  }
  const took = (i: number) => (files.committedAt[i] === null ? null : (files.committedAt[i] as number) - files.createdAt[i])
  const span = (ms: number | null) => (ms === null ? '' : ms < 1000 ? `${ms} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : ms < 3600000 ? `${(ms / 60000).toFixed(1)} min` : `${(ms / 3600000).toFixed(1)} h`)
  const bytes = (n: number) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : n < 1073741824 ? `${(n / 1048576).toFixed(1)} MiB` : `${(n / 1073741824).toFixed(1)} GiB`)
  const stateOf = (i: number) => {
    const state = data.states[files.state[i]]
    return state === 'PROCESSING' && files.leaseExpiresAt[i] !== null && (files.leaseExpiresAt[i] as number) < data.now ? STUCK : state
  }
  const errorOf = (i: number) => (files.error[i] === null ? '' : data.errors[files.error[i] as number])

  // What a search looks in, lower-cased once.
  const haystack: string[] = new Array(count)
  for (let i = 0; i < count; i++) haystack[i] = `${files.path[i]}\n${files.hash[i]}\n${errorOf(i)}`.toLowerCase()

  const columns: { key: string; label: string; value: (i: number) => string | number | null; show: (i: number) => string; numeric?: boolean }[] = [
    { key: 'state', label: 'State', value: stateOf, show: stateOf },
    { key: 'pipeline', label: 'Pipeline', value: (i) => data.pipelines[files.pipeline[i]]?.name ?? '', show: (i) => data.pipelines[files.pipeline[i]]?.name ?? '' },
    { key: 'path', label: 'Path', value: (i) => files.path[i], show: (i) => files.path[i] },
    { key: 'hash', label: 'Hash', value: (i) => files.hash[i], show: (i) => files.hash[i].slice(0, 12) },
    { key: 'attempts', label: 'Attempts', value: (i) => files.attempts[i], show: (i) => String(files.attempts[i]), numeric: true },
    { key: 'rows', label: 'Rows', value: (i) => files.rows[i], show: (i) => (files.rows[i] === null ? '' : (files.rows[i] as number).toLocaleString('en-US')), numeric: true },
    { key: 'size', label: 'Size', value: (i) => files.size[i], show: (i) => bytes(files.size[i]), numeric: true },
    { key: 'created', label: 'First seen (UTC)', value: (i) => files.createdAt[i], show: (i) => when(files.createdAt[i]) },
    { key: 'updated', label: 'Last change (UTC)', value: (i) => files.updatedAt[i], show: (i) => when(files.updatedAt[i]) },
    { key: 'took', label: 'Took', value: took, show: (i) => span(took(i)), numeric: true },
    // The file's own path is in most of its errors: the row says it already.
    { key: 'error', label: 'Error', value: errorOf, show: (i) => errorOf(i).split(files.path[i]).join('…') },
  ]

  const search = document.getElementById('file-search')
  const pipelineFilter = document.getElementById('file-pipeline')
  const stateFilter = document.getElementById('file-state')
  const body = document.getElementById('file-rows')
  const summary = document.getElementById('file-count')
  const pager = document.getElementById('file-pager')
  const head = document.getElementById('file-head')

  let sortKey = ''
  let descending = false
  let matching: number[] = []
  let page = 0
  let open = -1

  const text = (tag: string, content: string, className?: string) => {
    const element = document.createElement(tag)
    element.textContent = content
    if (className !== undefined) element.className = className
    return element
  }

  function filter(): void {
    const needle = String(search.value).trim().toLowerCase()
    const pipeline = pipelineFilter.value === '' ? -1 : Number(pipelineFilter.value)
    const state = String(stateFilter.value)
    const found: number[] = []
    for (let i = 0; i < count; i++) {
      if (pipeline !== -1 && files.pipeline[i] !== pipeline) continue
      if (state !== '' && stateOf(i) !== state) continue
      if (needle !== '' && !haystack[i].includes(needle)) continue
      found.push(i)
    }
    matching = found
    sort()
  }

  function sort(): void {
    const column = columns.find((candidate) => candidate.key === sortKey)
    if (column !== undefined) {
      const keyed = matching.map((i) => [column.value(i), i] as const)
      const direction = descending ? -1 : 1
      keyed.sort((a, b) => {
        if (a[0] === b[0]) return a[1] - b[1]
        if (a[0] === null) return 1
        if (b[0] === null) return -1
        return (a[0] < b[0] ? -1 : 1) * direction
      })
      matching = keyed.map((entry) => entry[1])
    }
    page = 0
    render()
  }

  function details(i: number): any {
    const row = document.createElement('tr')
    row.className = 'details'
    const cell = document.createElement('td')
    cell.colSpan = columns.length
    const pipeline = data.pipelines[files.pipeline[i]]
    const lines: [string, string][] = [
      ['hash', files.hash[i]],
      ['path', files.path[i]],
      ['state', `${stateOf(i)} after ${files.attempts[i]} attempt(s) of ${pipeline?.retryAttempts ?? '?'}`],
      ['history', `filedge history ${files.hash[i]}`],
    ]
    if (data.states[files.state[i]] === 'COMMITTED' && pipeline?.table !== undefined) {
      lines.push(['its rows', `SELECT * FROM "${pipeline.table.replace(/"/g, '""')}" WHERE _source_file_hash = '${files.hash[i]}'`])
    }
    if (files.error[i] !== null) lines.push(['error', errorOf(i)])
    const list = document.createElement('dl')
    for (const [term, value] of lines) {
      list.appendChild(text('dt', term))
      list.appendChild(text('dd', value, term === 'error' ? 'error' : 'code'))
    }
    cell.appendChild(list)
    row.appendChild(cell)
    return row
  }

  function render(): void {
    const pages = Math.max(1, Math.ceil(matching.length / PAGE))
    if (page >= pages) page = pages - 1
    const from = page * PAGE
    const shown = matching.slice(from, from + PAGE)
    const rows = document.createDocumentFragment()
    for (const i of shown) {
      const row = document.createElement('tr')
      row.dataset.index = String(i)
      row.className = `state-${stateOf(i).toLowerCase()}`
      for (const column of columns) row.appendChild(text('td', column.show(i), column.numeric === true ? 'num' : column.key))
      rows.appendChild(row)
      if (open === i) rows.appendChild(details(i))
    }
    body.replaceChildren(rows)
    const total = data.filesTotal
    summary.textContent =
      matching.length === 0
        ? 'No listed file matches.'
        : `${(from + 1).toLocaleString('en-US')}–${(from + shown.length).toLocaleString('en-US')} of ${matching.length.toLocaleString('en-US')} matching` +
          (count < total ? ` (${count.toLocaleString('en-US')} of the ledger's ${total.toLocaleString('en-US')} files listed)` : '')
    pager.querySelector('[data-page="prev"]').disabled = page === 0
    pager.querySelector('[data-page="next"]').disabled = page >= pages - 1
    pager.querySelector('.page').textContent = `page ${page + 1} of ${pages}`
    for (const cell of head.querySelectorAll('th')) {
      cell.setAttribute('aria-sort', cell.dataset.key === sortKey ? (descending ? 'descending' : 'ascending') : 'none')
    }
  }

  for (const column of columns) {
    const cell = text('th', column.label)
    cell.dataset.key = column.key
    cell.tabIndex = 0
    head.appendChild(cell)
  }
  head.addEventListener('click', (event: any) => {
    const key = event.target?.dataset?.key
    if (key === undefined) return
    descending = sortKey === key ? !descending : false
    sortKey = key
    sort()
  })
  body.addEventListener('click', (event: any) => {
    const row = event.target?.closest?.('tr[data-index]')
    if (row === null || row === undefined) return
    const index = Number(row.dataset.index)
    open = open === index ? -1 : index
    render()
  })
  pager.addEventListener('click', (event: any) => {
    const where = event.target?.dataset?.page
    if (where === 'prev') page = Math.max(0, page - 1)
    else if (where === 'next') page += 1
    else return
    render()
  })
  search.addEventListener('input', filter)
  pipelineFilter.addEventListener('change', filter)
  stateFilter.addEventListener('change', filter)
  // Links on the first screen and in the pipeline table narrow the list: #files?pipeline=0&state=FAILED.
  const follow = () => {
    const match = /^#files\?(.*)$/.exec(window.location.hash)
    if (match === null) return
    const params = new URLSearchParams(match[1])
    pipelineFilter.value = params.get('pipeline') ?? ''
    stateFilter.value = params.get('state') ?? ''
    search.value = params.get('q') ?? ''
    filter()
    document.getElementById('files').scrollIntoView()
  }
  window.addEventListener('hashchange', follow)
  filter()
  follow()
  document.body.dataset.ready = 'true'
}
