import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A partner's paginated API on loopback, as the fetch source meets them: the
 * same records served four ways, each the way real APIs page.
 *
 *   /cursor?limit=2&cursor=c4   { "data": [...], "meta": { "next_cursor": "c6" | null } }   (Stripe-like)
 *   /link?per_page=2&page=3     [...] with Link: <…page=4>; rel="next"                     (GitHub-like)
 *   /pages?limit=2&page=3       { "results": [...] }
 *   /offset?limit=2&offset=4    { "items": [...] }
 *
 * Every request must carry `Authorization: Bearer <token>` and
 * `api_key=<key>`, or it gets 401. `fault` answers a request instead of the
 * API (a 500, a 429, a page that is not JSON, a stalled page): tests set it
 * to break exactly the page they mean.
 */

export interface ApiRecord {
  readonly id: string
  readonly n: number
  readonly [key: string]: unknown
}

export interface ApiRequest {
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: IncomingMessage['headers']
  /** 1-based, across the server's life. */
  readonly number: number
  readonly at: number
}

export type Fault =
  | { readonly status: number; readonly headers?: Record<string, string>; readonly body?: string }
  /** Never answers: the request hangs until the client goes away (a SIGKILL) or `release()`. */
  | { readonly stall: true }
  /** Answers with this body (200) instead of the page. */
  | { readonly body: string; readonly contentType?: string }

export interface Api {
  readonly origin: string
  /** The data, in order; push to add records. */
  readonly records: ApiRecord[]
  readonly requests: ApiRequest[]
  token: string
  key: string
  fault?: (request: ApiRequest) => Fault | undefined
  /** Overrides the next cursor the /cursor endpoint gives (a server bug). */
  nextCursor?: (request: ApiRequest, computed: string | null) => string | null
  /** Answers every stalled request with its page. */
  release(): void
  /** Resolves when a request matching `test` arrives (or has arrived). */
  waitForRequest(test: (request: ApiRequest) => boolean, timeoutMs?: number): Promise<ApiRequest>
  close(): Promise<void>
}

const records = (count: number, from = 1): ApiRecord[] => Array.from({ length: count }, (_, i) => ({ id: `r${from + i}`, n: from + i }))
export { records as makeRecords }

export async function startApi(initial: ApiRecord[] = []): Promise<Api> {
  const stalled: (() => void)[] = []
  const waiters: { test: (request: ApiRequest) => boolean; resolve: (request: ApiRequest) => void }[] = []
  let count = 0

  const page = (request: ApiRequest, response: ServerResponse) => {
    const q = request.query
    const json = (body: unknown, headers: Record<string, string> = {}) => {
      response.writeHead(200, { 'content-type': 'application/json', ...headers })
      // Pretty-printed, as many APIs answer: the source must write each record on one line.
      response.end(JSON.stringify(body, null, 2))
    }
    const limit = Number(q.get('limit') ?? q.get('per_page') ?? 2)
    switch (request.path) {
      case '/cursor': {
        const from = q.has('cursor') ? Number(q.get('cursor')!.slice(1)) : 0
        const slice = api.records.slice(from, from + limit)
        const computed = from + limit < api.records.length ? `c${from + limit}` : null
        return json({ data: slice, meta: { next_cursor: api.nextCursor ? api.nextCursor(request, computed) : computed } })
      }
      case '/link': {
        const number = Number(q.get('page') ?? 1)
        const slice = api.records.slice((number - 1) * limit, number * limit)
        const more = number * limit < api.records.length
        const next = new URL(`${api.origin}/link`)
        next.searchParams.set('per_page', String(limit))
        next.searchParams.set('page', String(number + 1))
        // Like many APIs, the next link echoes the key it was given.
        next.searchParams.set('api_key', q.get('api_key') ?? '')
        return json(slice, more ? { link: `<${next}>; rel="next", <${api.origin}/link?page=1>; rel="first"` } : {})
      }
      case '/pages': {
        const number = Number(q.get('page') ?? 1)
        return json({ results: api.records.slice((number - 1) * limit, number * limit) })
      }
      case '/offset': {
        const offset = Number(q.get('offset') ?? 0)
        return json({ items: api.records.slice(offset, offset + limit) })
      }
      default:
        response.writeHead(404).end('{"error":"no such endpoint"}')
    }
  }

  const server = createServer((incoming, response) => {
    const url = new URL(incoming.url ?? '/', 'http://api')
    const request: ApiRequest = { path: url.pathname, query: url.searchParams, headers: incoming.headers, number: ++count, at: Date.now() }
    api.requests.push(request)
    for (const waiter of waiters.splice(0)) {
      if (waiter.test(request)) waiter.resolve(request)
      else waiters.push(waiter)
    }
    if (incoming.headers.authorization !== `Bearer ${api.token}` || url.searchParams.get('api_key') !== api.key) {
      response.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"bad credentials"}')
      return
    }
    const fault = api.fault?.(request)
    if (fault === undefined) return page(request, response)
    if ('stall' in fault) {
      stalled.push(() => page(request, response))
      return
    }
    if ('status' in fault) {
      response.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers }).end(fault.body ?? '{"error":"injected"}')
      return
    }
    response.writeHead(200, { 'content-type': fault.contentType ?? 'application/json' }).end(fault.body)
  })
  // Keep-alive sockets of a killed client must not keep close() waiting.
  server.keepAliveTimeout = 100
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo

  const api: Api = {
    origin: `http://127.0.0.1:${port}`,
    records: [...initial],
    requests: [],
    token: 'tok-3f9a61c2e7',
    key: 'key-b81d44e09a',
    release() {
      for (const answer of stalled.splice(0)) answer()
    },
    waitForRequest(test, timeoutMs = 20_000) {
      const found = api.requests.find(test)
      if (found !== undefined) return Promise.resolve(found)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('timed out waiting for a request')), timeoutMs)
        waiters.push({
          test,
          resolve: (request) => {
            clearTimeout(timer)
            resolve(request)
          },
        })
      })
    },
    async close() {
      api.release()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return api
}
