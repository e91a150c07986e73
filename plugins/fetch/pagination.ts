import type { CheckedPagination, Settings } from './options.js'
import { locate } from './json.js'

/**
 * Where a fetch stands: the page to ask for (`at`: the cursor, the next
 * link, the page number or the offset, as text; null for the first page) and
 * how many records at the start of that page were already promoted
 * (`skip`).
 *
 * `skip` is what lets a fetch end at the tail of the data and go on from
 * there later without repeating or skipping: an API whose last page has no
 * next cursor (or link, or is shorter than a full page) is asked for that
 * same page next time, and only the records past `skip` are new. It assumes
 * what every paginated API promises: a page's records keep their order, and
 * new ones come after them. Offset pagination never needs it (the offset
 * itself moves past the records taken).
 *
 * Positions are stored in the ledger as JSON text (`encode`), which is
 * what a cursor event's `from` and `to` hold, and compared as such.
 */
export interface Position {
  readonly at: string | null
  readonly skip: number
}

export const START: Position = { at: null, skip: 0 }

export function encode(position: Position): string {
  return JSON.stringify({ at: position.at, skip: position.skip })
}

/** A cursor from the ledger (null: none yet, the first page). */
export function decode(text: string | null): Position {
  if (text === null) return START
  const value = JSON.parse(text) as { at?: unknown; skip?: unknown }
  if ((value.at !== null && typeof value.at !== 'string') || !Number.isSafeInteger(value.skip)) throw new Error(`not a fetch cursor: ${text}`)
  return { at: value.at, skip: value.skip as number }
}

/** One page as the API answered it. */
export interface Answer {
  readonly url: URL
  readonly headers: Headers
  readonly text: string
}

/** What follows a page: where the next fetch starts, and whether there is a next page now. Or a problem with the answer, in words. */
export type Step = { readonly next: Position; readonly more: boolean } | { readonly problem: string }

export interface Paginator {
  /** The request for a page; `base` has every configured query parameter (secrets included) and the page size. */
  urlFor(position: Position, base: URL): URL
  /** What follows the page fetched at `position`, which held `count` records (of which `fresh` were new). */
  after(position: Position, answer: Answer, count: number, fresh: number): Step
}

/**
 * The paginator of the options. Non-advancing answers are caught here: a
 * next cursor or link equal to the one just used, with new records, would
 * have the fetch ask for the same page forever (an empty page that points
 * at itself is the end of the data, as some feeds answer when nothing is new).
 */
export function paginator(settings: Settings, strip: (url: URL) => string): Paginator {
  const pagination: CheckedPagination = settings.pagination
  const { pageSize } = settings
  /** The end of the data: the same page next time, past what it held. */
  const tail = (position: Position, count: number): Step => ({ next: { at: position.at, skip: count }, more: false })
  switch (pagination.type) {
    case 'cursor':
      return {
        urlFor(position, base) {
          if (position.at !== null) base.searchParams.set(pagination.param, position.at)
          return base
        },
        after(position, answer, count, fresh) {
          const found = locate(answer.text, pagination.field)
          if (found === undefined || (found.kind === 'value' && found.type === 'null')) return tail(position, count)
          if (found.kind === 'array' || found.type === 'object' || found.type === 'boolean') {
            return { problem: `the next cursor (${pagination.fieldText}) is ${found.kind === 'array' ? 'an array' : `a ${found.type}`}, not a string or a number` }
          }
          const next = found.type === 'string' ? (JSON.parse(found.raw) as string) : found.raw
          if (next === '') return tail(position, count)
          if (next === position.at) {
            if (fresh === 0) return tail(position, count)
            return { problem: `the next cursor (${pagination.fieldText}) is ${JSON.stringify(next)} again, the cursor this page was fetched with: the API does not advance` }
          }
          return { next: { at: next, skip: 0 }, more: true }
        },
      }
    case 'link':
      return {
        urlFor(position, base) {
          if (position.at === null) return base
          const url = new URL(position.at)
          // The stored link has no secrets (`strip`): put the configured parameters back.
          for (const [key, value] of base.searchParams) if (!url.searchParams.has(key) || settings.secretParams.has(key)) url.searchParams.set(key, value)
          return url
        },
        after(position, answer, count, fresh) {
          const link = nextLink(answer.headers.get('link'))
          if (link === undefined) return tail(position, count)
          const url = URL.canParse(link, answer.url.href) ? new URL(link, answer.url) : undefined
          if (url === undefined) return { problem: `the Link header's next page is not a URL: ${JSON.stringify(link.slice(0, 200))}` }
          // The request's headers (a token) must not go to another host because an answer said so.
          if (url.origin !== answer.url.origin) return { problem: `the Link header's next page is on another origin (${url.origin}); its requests would carry the headers meant for ${answer.url.origin}` }
          const next = strip(url)
          if (next === strip(answer.url)) {
            if (fresh === 0) return tail(position, count)
            return { problem: 'the Link header names this same page as the next one: the API does not advance' }
          }
          return { next: { at: next, skip: 0 }, more: true }
        },
      }
    case 'page':
      return {
        urlFor(position, base) {
          base.searchParams.set(pagination.param, position.at ?? String(pagination.start))
          return base
        },
        after(position, _answer, count) {
          const page = position.at === null ? pagination.start : Number(position.at)
          // checkOptions requires pageSize for numbered pages.
          if (count > pageSize!) return { problem: `${count} records, more than pageSize (${pageSize}): set pageSize to the API's page size, or a full page would be taken for the last one` }
          const full = count === pageSize
          return full ? { next: { at: String(page + 1), skip: 0 }, more: true } : tail(position, count)
        },
      }
    case 'offset':
      return {
        urlFor(position, base) {
          base.searchParams.set(pagination.param, position.at ?? '0')
          return base
        },
        after(position, _answer, count) {
          const offset = position.at === null ? 0 : Number(position.at)
          const full = pageSize === undefined ? count > 0 : count >= pageSize
          return { next: { at: String(offset + count), skip: 0 }, more: full }
        },
      }
  }
}

/**
 * The `rel="next"` target of a Link header (RFC 8288): `<https://…?page=2>;
 * rel="next", <…>; rel="last"`. A rel may list several relations
 * (`rel="next prefetch"`); parameters come in any order, quoted values may
 * hold commas and semicolons.
 */
export function nextLink(header: string | null): string | undefined {
  if (header === null) return undefined
  let i = 0
  while (i < header.length) {
    const open = header.indexOf('<', i)
    if (open === -1) return undefined
    const close = header.indexOf('>', open)
    if (close === -1) return undefined
    const target = header.slice(open + 1, close)
    // The parameters run to the next comma outside quotes.
    let end = close + 1
    for (let quoted = false; end < header.length && (quoted || header[end] !== ','); end++) if (header[end] === '"') quoted = !quoted
    const rel = /;\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))/i.exec(header.slice(close + 1, end))
    if ((rel?.[1] ?? rel?.[2] ?? '').toLowerCase().split(/\s+/).includes('next')) return target
    i = end + 1
  }
  return undefined
}
