import path from 'node:path'
import {
  createMutex,
  FiledgeError,
  localSource,
  sleep,
  type FileOrigin,
  type ListOptions,
  type Source,
  type SourceContext,
  type SourceEntry,
  type WatchOptions,
  type Watching,
} from '../../core/index.js'
import { createFetcher, showPosition, type FetchReport, type Fetcher } from './fetcher.js'
import { createFolder, manifestOf, MANIFEST, type Folder } from './folder.js'
import { checkOptions, readSecrets, type FetchOptions } from './options.js'

export type { FetchOptions, FetchRetry, Pagination } from './options.js'
export type { FetchReport, FetchedFile } from './fetcher.js'
export type { Manifest, PageRecord } from './folder.js'

/** A fetch source: a `Source`, plus the fetch itself for `filedge fetch`. */
export interface FetchSource extends Source {
  /**
   * Fetches what is new now (under the source's lease) and promotes it, or
   * on a dry run reports what would be promoted without writing anything or
   * moving the cursor. Never throws for the API's sake: a failure is the
   * report's `error`.
   */
  fetchNow(options: { readonly signal: AbortSignal; readonly dryRun?: boolean }): Promise<FetchReport>
}

/** What `connect` sets up. */
interface Connected {
  readonly fetcher: Fetcher
  readonly folder: Folder
  readonly files: Source
  readonly context: SourceContext
}

/**
 * A paginated HTTP API as a source: each fetch asks for the pages after the
 * source's cursor (kept in the ledger), writes them as NDJSON files with a
 * manifest each into a folder of the project (`.filedge/fetch/<name>`), and
 * lists that folder's files to the pipeline, which loads them like any other
 * file: hashed, claimed, committed once, with `_source_file_hash` on every
 * row and the manifest naming the pages behind the file (`filedge lineage`).
 *
 * Listing fetches first (a run, a watcher's start); `filedge fetch` fetches
 * without loading; `every` fetches again while watching. One process fetches
 * a source at a time: the others list what it promoted (see fetcher.ts).
 */
export function fetch(options: FetchOptions): FetchSource {
  const settings = checkOptions(options)
  const run = createMutex()
  let connected: Connected | undefined
  let described: string | undefined

  const use = (): Connected => {
    if (connected === undefined) throw new FiledgeError('INTERNAL', `${where()}: used before connect()`, { plugin: 'fetch' })
    return connected
  }
  function where(): string {
    return described ?? `fetch GET ${settings.url.origin}${settings.url.pathname}`
  }

  /** Data files with their manifests, as the local source lists them (staging and manifests never). */
  async function* promoted({ signal, warn }: ListOptions): AsyncGenerator<SourceEntry> {
    const { files, folder } = use()
    const complete = await folder.promoted()
    for await (const entry of files.list({ signal, warn })) {
      if (complete.has(path.posix.basename(entry.path))) yield entry
    }
  }

  /** One fetch at a time in this process (a run's listing and a watcher's tick may meet). */
  const fetchNow: FetchSource['fetchNow'] = ({ signal, dryRun = false }) =>
    run.run(async () => {
      const report = await use().fetcher.fetch(signal, dryRun)
      const { logger } = use().context
      if (report.status === 'busy') logger.info(`${where()}: another process is fetching; listing what is promoted`)
      else if (report.status === 'fetched' && !dryRun) {
        logger.info(`${where()}: ${report.pages} page${report.pages === 1 ? '' : 's'}, ${report.records} new record${report.records === 1 ? '' : 's'} in ${report.files.length} file${report.files.length === 1 ? '' : 's'}; cursor ${report.cursor.from} → ${report.cursor.to}`)
      }
      return report
    })

  return {
    name: 'fetch',
    describe: where,
    fetchNow,

    async connect(context: SourceContext) {
      const { ledger, worker, config } = context
      if (ledger === undefined || worker === undefined) {
        throw new FiledgeError('INTERNAL', `${where()}: connect() needs the run's ledger and worker id (SourceContext.ledger, .worker)`, { plugin: 'fetch' })
      }
      const pipelines = context.pipelines ?? []
      const id = settings.name ?? (pipelines.length === 1 ? pipelines[0] : undefined)
      if (id === undefined) {
        throw new FiledgeError('CONFIG_INVALID', `${where()}: serves pipelines ${pipelines.join(', ') || '(none)'}; give it a name (fetch({ name: '…' })), which keys its cursor and its folder`, { plugin: 'fetch' })
      }
      // The id as a folder name: nothing that could climb out of .filedge/fetch (`..`) or hide (a leading dot).
      const folderName = id.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\./, '_')
      const dir = path.resolve(config.root, settings.dir ?? path.join('.filedge', 'fetch', folderName))
      const folder = createFolder(dir, settings.gzip)
      await folder.prepare()
      const secrets = readSecrets(settings, where())
      const fetcher = createFetcher({
        id,
        settings,
        folder,
        root: config.root,
        ledger,
        worker,
        leaseTtlMs: config.lease.ttlMs,
        heartbeatMs: config.lease.heartbeatMs,
        logger: context.logger,
        query: secrets.query,
        headers: secrets.headers,
        secrets: secrets.secrets,
      })
      // Origin and path only: the query (secrets as ***) is in each page's messages and the manifests.
      described = `fetch ${id} (GET ${settings.url.origin}${settings.url.pathname})`
      const files = localSource({ dir, root: config.root, include: ['*.ndjson', '*.ndjson.gz'], exclude: [], followSymlinks: 'inside' })
      connected = { fetcher, folder, files, context }
    },

    /**
     * Fetches, then lists every promoted file, then reports the fetch's
     * failure if it failed: files promoted before (in this fetch or an
     * earlier one) still load, and the run still fails loudly.
     */
    async *list(listOptions: ListOptions) {
      const report = await fetchNow({ signal: listOptions.signal })
      // A run that is stopping ends its listing quietly, as other sources do.
      if (listOptions.signal.aborted) return
      yield* promoted(listOptions)
      if (report.error !== undefined) throw report.error
    },

    /**
     * With `every`, fetches again that often and reports files it (or
     * another process) promoted since; without it, a watcher only has what
     * its start listed, and this watches nothing.
     */
    async watch({ signal, onEntry, warn }: WatchOptions): Promise<Watching> {
      const everyMs = settings.everyMs
      if (everyMs === undefined) return { close: async () => {} }
      const stop = new AbortController()
      const seen = new Set<string>()
      const key = (entry: SourceEntry) => `${entry.path}\u0000${entry.version}`
      for await (const entry of promoted({ signal, warn })) seen.add(key(entry))
      const loop = (async () => {
        const both = AbortSignal.any([signal, stop.signal])
        while (!both.aborted) {
          await sleep(everyMs, both)
          if (both.aborted) break
          const report = await fetchNow({ signal: both })
          if (report.error !== undefined && report.error.code !== 'STOPPED') warn(report.error.message)
          for await (const entry of promoted({ signal: both, warn })) {
            if (seen.has(key(entry))) continue
            seen.add(key(entry))
            onEntry(entry)
          }
        }
      })()
      return {
        async close() {
          stop.abort()
          await loop.catch(() => undefined)
        },
      }
    },

    stat: (file) => use().files.stat!(file),
    read: (entry, readOptions) => use().files.read(entry, readOptions),
    localPath: (file) => use().files.localPath!(file),

    async describeFile(file, { root }): Promise<FileOrigin | undefined> {
      const manifest = await manifestOf(path.resolve(root, file))
      if (manifest === undefined) return undefined
      const first = manifest.pages[0]?.page
      const last = manifest.pages[manifest.pages.length - 1]?.page
      const pages = first === last ? `page ${first}` : `pages ${first}–${last}`
      return {
        summary: `GET ${manifest.url} · ${pages} of the fetch at ${manifest.startedAt} · ${manifest.records} record${manifest.records === 1 ? '' : 's'} · cursor ${showPosition(manifest.cursor.from)} → ${showPosition(manifest.cursor.to)} · ${path.posix.basename(file)}${MANIFEST}`,
        details: manifest as unknown as Record<string, unknown>,
      }
    },
  }
}

export default fetch
