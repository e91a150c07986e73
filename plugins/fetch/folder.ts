import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises'
import path from 'node:path'
import { fsyncPath, writeDurably } from '../../core/index.js'
import { gzipSync } from 'node:zlib'
import type { Position } from './pagination.js'

/**
 * The fetch source's folder: promoted data files (`00000007-3f9a0c1d2e4b.ndjson.gz`)
 * each with its manifest (`<file>.manifest.json`), and `.staging/`, where a
 * file and its manifest are written before they are promoted.
 *
 * Promotion writes both into staging (same filesystem), fsyncs them, renames
 * the manifest into the folder, then the data file, then fsyncs the folder.
 * So a data file in the folder always has its manifest; the listing also
 * lists only data files with one. A manifest without its data file is a
 * promotion a crash cut between the two renames: the next fetch (under the
 * lease) finishes it from staging when the bytes there match the manifest's
 * SHA-256, or removes the manifest (and fetches those pages again), but only
 * for the newest manifest, the one the ledger's cursor has not yet moved past.
 *
 * A name is the file's sequence number in the folder (so names sort in fetch
 * order: truncate and cdc pipelines apply files by path) and the start of
 * its SHA-256, which is also its identity in the ledger and the
 * `_source_file_hash` of its rows.
 */

export const MANIFEST = '.manifest.json'
const STAGING = '.staging'
const NAME = /^(\d{8})-[0-9a-f]{12}\.ndjson(\.gz)?$/

export interface PageRecord {
  /** The page's number in its fetch (1 = the first page that fetch asked for). */
  readonly page: number
  /** The request, secrets redacted. */
  readonly url: string
  /** Records the page held, and how many of them were new (the rest were promoted before). */
  readonly records: number
  readonly taken: number
}

export interface Manifest {
  readonly format: 'filedge-fetch/1'
  /** The source's id (its ledger cursor and lease). */
  readonly source: string
  /** The configured first page, secrets redacted. */
  readonly url: string
  readonly pagination: string
  /** Where the source stood before and after these pages (null: before its first page); the ledger holds the same as JSON text. */
  readonly cursor: { readonly from: Position | null; readonly to: Position }
  readonly pages: readonly PageRecord[]
  readonly records: number
  readonly startedAt: string
  readonly finishedAt: string
  readonly file: string
  readonly bytes: number
  readonly sha256: string
}

/** A batch of pages, ready to be written: its file name and bytes are decided by its records alone (and its place in the folder). */
export interface Batch {
  readonly name: string
  readonly bytes: Buffer
  readonly sha256: string
  readonly manifest: Manifest
}

async function sha256Of(file: string): Promise<string | undefined> {
  const bytes = await readFile(file).catch(() => undefined)
  return bytes === undefined ? undefined : createHash('sha256').update(bytes).digest('hex')
}

export function createFolder(dir: string, gzip: boolean) {
  const staging = path.join(dir, STAGING)

  /** Data file names in the folder, oldest first, and the manifests there (by the data file they describe). */
  async function names(): Promise<{ data: string[]; manifests: Set<string> }> {
    const entries = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [] as string[]
      throw error
    })
    const data = entries.filter((name) => NAME.test(name)).sort()
    const manifests = new Set(entries.filter((name) => name.endsWith(MANIFEST) && NAME.test(name.slice(0, -MANIFEST.length))).map((name) => name.slice(0, -MANIFEST.length)))
    return { data, manifests }
  }

  async function readManifest(name: string): Promise<Manifest> {
    const file = path.join(dir, name + MANIFEST)
    try {
      return JSON.parse(await readFile(file, 'utf8')) as Manifest
    } catch (error) {
      throw new Error(`${file}: not a readable manifest (${(error as Error).message}); the fetch source cannot tell what it promoted`, { cause: error })
    }
  }

  return {
    dir,

    async prepare(): Promise<void> {
      await mkdir(staging, { recursive: true })
    },

    /** Data files that have their manifest: what the source lists. */
    async promoted(): Promise<Set<string>> {
      const { data, manifests } = await names()
      return new Set(data.filter((name) => manifests.has(name)))
    },

    /** The newest manifest (highest sequence), whether or not its data file is in place. */
    async newest(): Promise<Manifest | undefined> {
      const { manifests } = await names()
      const newest = [...manifests].sort().pop()
      return newest === undefined ? undefined : readManifest(newest)
    },

    /** Every manifest, oldest first (a ledger that lost its cursors rebuilds them from these). */
    async manifests(): Promise<Manifest[]> {
      const { manifests } = await names()
      return Promise.all([...manifests].sort().map(readManifest))
    },

    /**
     * Makes a promoted manifest whole, or removes it: its data file is in
     * place with the bytes the manifest names (true), is moved in from
     * staging where a crash left it (true), or is nowhere to be found
     * (the manifest is removed: false).
     */
    async settle(manifest: Manifest): Promise<boolean> {
      const target = path.join(dir, manifest.file)
      if ((await sha256Of(target)) === manifest.sha256) return true
      const staged = path.join(staging, manifest.file)
      if ((await sha256Of(staged)) === manifest.sha256) {
        await rename(staged, target)
        await fsyncPath(dir)
        return true
      }
      await rm(path.join(dir, manifest.file + MANIFEST), { force: true })
      await fsyncPath(dir)
      return false
    },

    /** Removes what a promotion cut short left in staging (under the lease: nobody else is promoting). */
    async clearStaging(): Promise<void> {
      await rm(staging, { recursive: true, force: true })
      await mkdir(staging, { recursive: true })
    },

    /** The next batch's name and bytes: its sequence number follows the highest in the folder (and `ahead` more, for files not written). */
    async batch(ahead: number, records: readonly string[], manifest: Omit<Manifest, 'file' | 'bytes' | 'sha256'>): Promise<Batch> {
      const { data, manifests } = await names()
      const last = [...data, ...manifests].map((name) => Number(NAME.exec(name)![1])).reduce((a, b) => Math.max(a, b), 0) + ahead
      const text = Buffer.from(`${records.join('\n')}\n`)
      const bytes = gzip ? gzipSync(text) : text
      const sha256 = createHash('sha256').update(bytes).digest('hex')
      const name = `${String(last + 1).padStart(8, '0')}-${sha256.slice(0, 12)}.ndjson${gzip ? '.gz' : ''}`
      return { name, bytes, sha256, manifest: { ...manifest, file: name, bytes: bytes.length, sha256 } }
    },

    /** Staging, fsync, manifest in, data in, fsync the folder (see above). */
    async promote(batch: Batch): Promise<void> {
      const stagedData = path.join(staging, batch.name)
      const stagedManifest = stagedData + MANIFEST
      await writeDurably(stagedData, batch.bytes)
      await writeDurably(stagedManifest, `${JSON.stringify(batch.manifest, null, 2)}\n`)
      await rename(stagedManifest, path.join(dir, batch.name + MANIFEST))
      await rename(stagedData, path.join(dir, batch.name))
      await fsyncPath(dir)
    },
  }
}

export type Folder = ReturnType<typeof createFolder>

/** A data file's manifest, by the file's absolute path; undefined when it has none. */
export async function manifestOf(file: string): Promise<Manifest | undefined> {
  const text = await readFile(file + MANIFEST, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined
    throw error
  })
  return text === undefined ? undefined : (JSON.parse(text) as Manifest)
}

/** Whether a path names a promoted data file of a fetch folder (what the listing yields). */
export function isDataFile(file: string): boolean {
  return NAME.test(path.basename(file))
}

