import path from 'node:path'
import { FiledgeError, describeError, isFiledgeError, type LedgerStore, type Logger } from '../../core/index.js'
import type { Folder, Manifest, PageRecord } from './folder.js'
import { createHttp, httpError } from './http.js'
import { locate } from './json.js'
import type { Settings } from './options.js'
import { decode, encode, paginator, START, type Position } from './pagination.js'

/**
 * One fetch of a source: under its lease, pages from the ledger's cursor on,
 * promoted a batch at a time, the cursor advanced after each promotion.
 *
 * Order of events for a batch, and what a crash at each point leaves:
 *  1. pages fetched into memory — nothing written: the next fetch asks again;
 *  2. file and manifest written to staging, fsynced — cleared by the next fetch;
 *  3. manifest, then data file, renamed into the folder — a manifest alone is
 *     finished from staging or removed by the next fetch (folder.ts);
 *  4. the ledger's cursor advanced, fenced by the lease token and by the
 *     cursor it starts from — until then the newest manifest is ahead of the
 *     ledger, and the next fetch advances the cursor from it (`catchUp`)
 *     before asking the API for anything, so those pages are not fetched
 *     into a second file.
 * A page is never skipped (the cursor never moves past what is not
 * promoted), and never promoted twice.
 *
 * Errors stop the fetch where they happen: the batch being fetched is
 * dropped, batches promoted before it stay, and the cursor stays at the last
 * of them. Every error names the page and its URL without secrets.
 */

export interface FetchedFile {
  /** The entry path (relative to the project root), as the ledger and `filedge lineage` name it. */
  readonly path: string
  readonly records: number
  readonly pages: number
  readonly sha256: string
  readonly from: string | null
  readonly to: string
}

export interface FetchReport {
  readonly source: string
  /** `fetched`: something new was promoted (or, on a dry run, would be); `unchanged`: nothing new; `busy`: another process holds the lease; `failed`: see `error`. */
  readonly status: 'fetched' | 'unchanged' | 'busy' | 'failed'
  readonly dryRun: boolean
  readonly pages: number
  readonly records: number
  /** Promoted (on a dry run: would be promoted, with the name it would get). */
  readonly files: readonly FetchedFile[]
  /** The cursor before and after, for people (`start`, `"c3"`, `"c3" +2`). */
  readonly cursor: { readonly from: string; readonly to: string }
  readonly error?: FiledgeError
}

export interface FetcherContext {
  readonly id: string
  readonly settings: Settings
  readonly folder: Folder
  readonly root: string
  readonly ledger: LedgerStore
  readonly worker: string
  readonly leaseTtlMs: number
  readonly heartbeatMs: number
  readonly logger?: Logger
  /** Query parameters and headers with their secrets read. */
  readonly query: readonly (readonly [string, string])[]
  readonly headers: readonly (readonly [string, string])[]
  /** The values read through env(): never written anywhere, and refused in a cursor. */
  readonly secrets: readonly string[]
}

const REDACTED = '***'

/** A manifest's position as the ledger holds it. */
function cursorText(position: Position | null): string | null {
  return position === null ? null : encode(position)
}

/** A cursor for people: `start`, `"c3"`, `"c3" +2` (two records of that page already taken). */
export function showCursor(text: string | null): string {
  return showPosition(text === null ? null : decode(text))
}

export function showPosition(position: Position | null): string {
  if (position === null) return 'start'
  const { at, skip } = position
  const shown = at === null ? 'start' : JSON.stringify(at.length > 80 ? `${at.slice(0, 80)}…` : at)
  return skip === 0 ? shown : `${shown} +${skip}`
}

export function createFetcher(ctx: FetcherContext) {
  const { settings, folder, ledger, id } = ctx
  const lease = `fetch:${id}`
  const secretValues = ctx.secrets.filter((value) => value.length >= 4)
  const hideSecrets = (text: string) => secretValues.reduce((out, secret) => out.split(secret).join(REDACTED), text)
  /** A URL safe to write anywhere: secret parameters shown as ***, any secret value that slipped in blanked. */
  const display = (url: URL): string => {
    const copy = new URL(url)
    const marker = 'FILEDGE-REDACTED'
    for (const key of settings.secretParams) if (copy.searchParams.has(key)) copy.searchParams.set(key, marker)
    return hideSecrets(copy.toString().split(marker).join(REDACTED))
  }
  /** A URL as a cursor to keep in the ledger: the secret parameters left out (they are put back on the request). */
  const strip = (url: URL): string => {
    const copy = new URL(url)
    for (const key of settings.secretParams) copy.searchParams.delete(key)
    return copy.toString()
  }
  const pages = paginator(settings, strip)
  const http = createHttp({ ...settings, headers: ctx.headers })
  const firstUrl = display(base())
  const entryPath = (name: string) => path.relative(ctx.root, path.join(folder.dir, name)).split(path.sep).join('/')

  /** The configured URL with every configured query parameter and the page size. */
  function base(): URL {
    const url = new URL(settings.url)
    for (const [key, value] of ctx.query) url.searchParams.set(key, value)
    if (settings.pageSize !== undefined) url.searchParams.set(settings.pageSizeParam, String(settings.pageSize))
    return url
  }

  const failure = (message: string, cause?: unknown) => new FiledgeError('PLUGIN_ERROR', `fetch ${id}: ${message}`, { plugin: 'fetch', cause })

  /** Refused advances are this process's to stop on: it lost the lease, or someone else moved the cursor. */
  async function advance(token: string, from: string | null, to: string, records: number, pageCount: number, file?: { path: string; sha256: string }): Promise<void> {
    const outcome = await ledger.advanceCursor({ source: id, lease, token, from, to, worker: ctx.worker, records, pages: pageCount, ...(file === undefined ? {} : { file: file.path, hash: file.sha256 }) })
    if (outcome.status === 'lost') throw failure('lost the fetch lease (it expired and another process took it); the cursor was not moved and nothing more is promoted')
    if (outcome.status === 'moved') throw failure(`the cursor moved under this fetch (now ${showCursor(outcome.current)}, expected ${showCursor(from)}); nothing more is promoted`)
  }

  /**
   * Where promotion is ahead of the ledger: the newest manifest starts at the
   * ledger's cursor (a crash, or a lost advance, between promotion and the
   * advance). `apply` advances the cursor over it (a real fetch, under the
   * lease); a dry run only starts from its end. A ledger without any cursor
   * for a folder full of manifests (a new ledger, the old one lost) follows
   * them all from the start.
   */
  async function catchUp(current: string | null, apply?: (manifest: Manifest) => Promise<void>): Promise<string | null> {
    const newest = await folder.newest()
    if (newest === undefined || cursorText(newest.cursor.to) === current) return current
    const chain = cursorText(newest.cursor.from) === current ? [newest] : current === null ? await folder.manifests() : []
    let cursor = current
    for (const manifest of chain) {
      if (cursorText(manifest.cursor.from) !== cursor) continue
      if (apply !== undefined) {
        if (!(await folder.settle(manifest))) break
        await apply(manifest)
      }
      cursor = cursorText(manifest.cursor.to)
    }
    return cursor
  }

  async function fetchPages(signal: AbortSignal, dryRun: boolean, token: string | undefined): Promise<FetchReport> {
    const started = Date.now()
    const deadline = started + settings.maxTimeMs
    let current = (await ledger.cursorOf(id))?.to ?? null
    current = await catchUp(
      current,
      token === undefined
        ? undefined
        : async (manifest) => {
            await advance(token, cursorText(manifest.cursor.from), cursorText(manifest.cursor.to)!, manifest.records, manifest.pages.length, { path: entryPath(manifest.file), sha256: manifest.sha256 })
            ctx.logger?.info(`${entryPath(manifest.file)}: promoted before the last fetch stopped; the cursor now moves past it (${showCursor(cursorText(manifest.cursor.to))})`)
          },
    )
    if (token !== undefined) await folder.clearStaging()
    const first = current
    const files: FetchedFile[] = []
    let pageCount = 0
    let position: Position = decode(current)
    let batch: { from: string | null; startedAt: string; records: string[]; pages: PageRecord[] } = { from: current, startedAt: new Date().toISOString(), records: [], pages: [] }
    const seen = new Set<string | null>([position.at])
    let previous: string | undefined

    const flush = async () => {
      const to = encode(position)
      const { from, records, pages: batchPages, startedAt } = batch
      batch = { from: to, startedAt: new Date().toISOString(), records: [], pages: [] }
      if (batchPages.length === 0 || to === (from ?? encode(START))) return
      if (records.length === 0) {
        // Pages with nothing new (an empty page with a new cursor): the cursor moves on, no file.
        if (!dryRun) await advance(token!, from, to, 0, batchPages.length)
        current = to
        return
      }
      // A dry run writes nothing, so its would-be files are numbered on from the folder's.
      const prepared = await folder.batch(dryRun ? files.length : 0, records, {
        format: 'filedge-fetch/1',
        source: id,
        url: firstUrl,
        pagination: settings.pagination.type,
        cursor: { from: from === null ? null : decode(from), to: position },
        pages: batchPages,
        records: records.length,
        startedAt,
        finishedAt: new Date().toISOString(),
      })
      const file = { path: entryPath(prepared.name), sha256: prepared.sha256 }
      if (!dryRun) {
        await folder.promote(prepared)
        await advance(token!, from, to, records.length, batchPages.length, file)
      }
      current = to
      files.push({ ...file, records: records.length, pages: batchPages.length, from, to })
    }

    try {
      for (;;) {
        if (settings.maxPages !== undefined && pageCount >= settings.maxPages) break
        signal.throwIfAborted()
        const url = pages.urlFor(position, base())
        // The URL ends in a space: core's redact() blanks a secret-looking value (`api_key=***`) up to the next whitespace.
        const label = `GET ${display(url)} (page ${pageCount + 1})`
        const answer = await http.get({ url, label, deadline, signal })
        const bad = (problem: string) => httpError(label, problem)
        let records: readonly string[]
        try {
          JSON.parse(answer.text)
        } catch (error) {
          const type = answer.headers.get('content-type') ?? 'no content-type'
          throw bad(`the answer is not JSON (${type}, ${answer.text.length} characters): ${(error as Error).message}`)
        }
        const found = locate(answer.text, settings.records)
        if (found === undefined) throw bad(`the records path ${JSON.stringify(settings.recordsText)} matches nothing in the answer`)
        if (found.kind !== 'array') throw bad(`the records path ${JSON.stringify(settings.recordsText)} holds ${found.type === 'object' ? 'an object' : `a ${found.type}`}, not an array of records`)
        records = found.elements
        const notObject = records.findIndex((record) => !record.startsWith('{'))
        if (notObject !== -1) throw bad(`record ${notObject + 1} of the page is not a JSON object: ${records[notObject].slice(0, 80)}`)
        if (records.length < position.skip) {
          throw bad(`${records.length} records, fewer than the ${position.skip} of this page already promoted: the API's records changed under the cursor`)
        }
        const joined = records.join('\n')
        if (records.length > 0 && joined === previous) throw bad('the same records as the page before it: the API does not advance (check pagination)')
        previous = joined
        const fresh = records.slice(position.skip)
        const step = pages.after(position, answer, records.length, fresh.length)
        if ('problem' in step) throw bad(step.problem)
        if (step.more && seen.has(step.next.at)) throw bad(`the next page (${showCursor(encode(step.next))}) was already fetched in this run: the API would loop forever`)
        if (secretValues.some((secret) => step.next.at?.includes(secret))) throw bad('the next page carries a secret of this source under another parameter; it would be kept in the ledger, so the fetch stops')
        seen.add(step.next.at)
        pageCount++
        batch.records.push(...fresh)
        batch.pages.push({ page: pageCount, url: display(url), records: records.length, taken: fresh.length })
        position = step.next
        if (!step.more) break
        if (batch.pages.length >= settings.pagesPerFile) await flush()
      }
      await flush()
    } catch (error) {
      const stopped = signal.aborted && !isFiledgeError(error)
      const reason = stopped
        ? new FiledgeError('STOPPED', `fetch ${id}: stopped before the fetch finished; what was promoted stays, the rest is fetched next time`, { plugin: 'fetch' })
        : isFiledgeError(error)
          ? error
          : failure(describeError(error), error)
      return report(dryRun, 'failed', first, current, pageCount, files, reason)
    }
    return report(dryRun, files.length > 0 ? 'fetched' : 'unchanged', first, current, pageCount, files)
  }

  function report(dryRun: boolean, status: FetchReport['status'], from: string | null, to: string | null, pageCount: number, files: FetchedFile[], error?: FiledgeError): FetchReport {
    return {
      source: id,
      status,
      dryRun,
      pages: pageCount,
      records: files.reduce((sum, file) => sum + file.records, 0),
      files,
      cursor: { from: showCursor(from), to: showCursor(to) },
      ...(error === undefined ? {} : { error }),
    }
  }

  return {
    firstUrl,

    /**
     * Fetches what is new. Takes the source's lease first; another process
     * holding it makes this one skip (`busy`), as a held file claim does. A
     * dry run takes no lease and writes nothing: it reports what a fetch
     * from the ledger's cursor would promote now.
     */
    async fetch(signal: AbortSignal, dryRun: boolean): Promise<FetchReport> {
      const current = async () => (await ledger.cursorOf(id))?.to ?? null
      const failed = async (error: unknown) => {
        const at = await current().catch(() => null)
        return report(dryRun, 'failed', at, at, 0, [], isFiledgeError(error) ? error : failure(describeError(error), error))
      }
      if (dryRun) return fetchPages(signal, true, undefined).catch(failed)
      const token = await ledger.takeLease(lease, ctx.worker, ctx.leaseTtlMs)
      if (token === undefined) {
        const at = await current()
        return report(false, 'busy', at, at, 0, [])
      }
      // The lease is renewed while pages are fetched; one that is lost stops the fetch (its next advance would be refused anyway).
      const stop = new AbortController()
      let lost: FiledgeError | undefined
      const renew = setInterval(() => {
        void ledger.renewLease(lease, token, ctx.leaseTtlMs).then(
          (held) => {
            if (held) return
            lost = failure('lost the fetch lease (it expired and another process took it); nothing more is promoted')
            stop.abort(lost)
          },
          () => undefined,
        )
      }, ctx.heartbeatMs)
      try {
        const result = await fetchPages(AbortSignal.any([signal, stop.signal]), false, token)
        return lost !== undefined && result.status === 'failed' ? { ...result, error: lost } : result
      } catch (error) {
        return await failed(error)
      } finally {
        clearInterval(renew)
        await ledger.releaseLease(lease, token).catch(() => undefined)
      }
    },
  }
}

export type Fetcher = ReturnType<typeof createFetcher>
