import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises'
import path from 'node:path'
import { fsyncPath, writeDurably } from '../../core/index.js'
import { gzipSync } from 'node:zlib'
import type { Batch, DeadLetter } from './batch.js'
import { ordered, toRanges } from './batch.js'
import type { Identity } from './broker.js'

/**
 * The queue source's folder. Each promoted batch is a manifest
 * (`00000007-3f9a0c1d2e4b.manifest.json`), its data file
 * (`00000007-3f9a0c1d2e4b.ndjson.gz`, absent when every message was a dead
 * letter) and its dead letters (`dead-letter/00000007-3f9a0c1d2e4b.ndjson`,
 * absent when there were none). `.staging/` is where all three are written
 * and fsynced first.
 *
 * The manifest is the batch's commit point: promotion renames the data file
 * and the dead letters in, then the manifest, then fsyncs the folders. The
 * listing offers only data files whose manifest is there, and a data or
 * dead-letter file without one is what a stop between the renames left: the
 * next holder of the source's lease finishes it from staging (when the
 * ledger recorded the batch) or removes it (its messages were never
 * acknowledged, so the broker delivers them again).
 *
 * A name is the batch's number (the ledger's cursor counts them, so names
 * sort in consumption order: cdc pipelines apply files by path) and the
 * start of the SHA-256 of its data file (of its dead letters when it has no
 * data), which is the file's identity in the ledger and `_source_file_hash`.
 */

export const MANIFEST = '.manifest.json'
export const DEAD_LETTER_DIR = 'dead-letter'
const STAGING = '.staging'
const NAME = /^(\d{8})-[0-9a-f]{12}$/
const DATA = /^(\d{8}-[0-9a-f]{12})\.ndjson(\.gz)?$/

export interface Manifest {
  readonly format: 'filedge-queue/1'
  /** The source's id (its lease `queue:<id>` and cursor in the ledger). */
  readonly source: string
  readonly broker: 'jetstream' | 'rabbitmq'
  /** Where the messages came from, no secret: servers, stream, consumer, subject; or url (password as ***), queue. */
  readonly origin: Readonly<Record<string, unknown>>
  /** JetStream: when the stream was created; its sequences count from there (a stream created again starts at 1). */
  readonly epoch?: string
  readonly batch: number
  readonly name: string
  /** The data file (null when every message was a dead letter), its size and SHA-256. */
  readonly file: string | null
  readonly bytes: number
  readonly sha256: string | null
  readonly records: number
  /** JetStream: the lowest and highest stream sequence in the batch (records and dead letters). */
  readonly first?: number
  readonly last?: number
  /** JetStream: the records' stream sequences, in file order, as ranges ([[1001, 2000]]): line n of the file is the nth. */
  readonly sequences?: readonly (readonly [number, number])[]
  /** RabbitMQ: the records' message ids, in file order: line n of the file is the nth. */
  readonly ids?: readonly string[]
  readonly deadLetters: {
    readonly file: string
    readonly count: number
    readonly sha256: string
    readonly sequences?: readonly (readonly [number, number])[]
    readonly ids?: readonly string[]
  } | null
  /** Deliveries of a message already in this batch (written once, acknowledged each time). */
  readonly duplicates: number
  /** What closed the batch: maxRecords, maxBytes, maxWait, maxHeld (the broker's prefetch), drained (a run found nothing more), stopped. */
  readonly closedBy: string
  readonly openedAt: string
  readonly closedAt: string
}

/** A batch ready to be written: its name and bytes follow from its messages alone (and its number). */
export interface Prepared {
  readonly manifest: Manifest
  readonly data?: Buffer
  readonly dead?: Buffer
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

async function sha256Of(file: string): Promise<string | undefined> {
  const bytes = await readFile(file).catch(() => undefined)
  return bytes === undefined ? undefined : sha256(bytes)
}

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [] as string[]
    throw error
  })
}

export function createFolder(dir: string, gzip: boolean) {
  const staging = path.join(dir, STAGING)
  const deadDir = path.join(dir, DEAD_LETTER_DIR)
  const dataName = (name: string) => `${name}.ndjson${gzip ? '.gz' : ''}`

  async function manifestNames(): Promise<string[]> {
    return (await entries(dir))
      .filter((entry) => entry.endsWith(MANIFEST) && NAME.test(entry.slice(0, -MANIFEST.length)))
      .map((entry) => entry.slice(0, -MANIFEST.length))
      .sort()
  }

  async function readManifest(file: string): Promise<Manifest> {
    try {
      return JSON.parse(await readFile(file, 'utf8')) as Manifest
    } catch (error) {
      throw new Error(`${file}: not a readable manifest (${(error as Error).message}); the queue source cannot tell what it promoted`, { cause: error })
    }
  }

  /** Renames a promoted batch's files in from staging, the manifest last, and makes the renames durable. */
  async function publish(manifest: Manifest): Promise<void> {
    if (manifest.file !== null) await rename(path.join(staging, manifest.file), path.join(dir, manifest.file)).catch(inPlace)
    if (manifest.deadLetters !== null) {
      await rename(path.join(staging, path.basename(manifest.deadLetters.file)), path.join(dir, manifest.deadLetters.file)).catch(inPlace)
      await fsyncPath(deadDir)
    }
    await rename(path.join(staging, manifest.name + MANIFEST), path.join(dir, manifest.name + MANIFEST))
    await fsyncPath(dir)
  }

  /** A rename whose source is gone because an earlier promotion of the batch moved it already (finishing from staging). */
  function inPlace(error: NodeJS.ErrnoException): void {
    if (error.code !== 'ENOENT') throw error
  }

  return {
    dir,
    dataName,

    async prepare(): Promise<void> {
      await mkdir(staging, { recursive: true })
      await mkdir(deadDir, { recursive: true })
    },

    /** Data files that have their manifest: what the source lists. */
    async promoted(): Promise<Set<string>> {
      const manifests = new Set(await manifestNames())
      return new Set((await entries(dir)).filter((entry) => manifests.has(DATA.exec(entry)?.[1] ?? '')))
    },

    /** Every manifest, oldest first. */
    async manifests(): Promise<Manifest[]> {
      const names = await manifestNames()
      const out: Manifest[] = []
      // In slices: a folder of a hundred thousand batches must not open them all at once.
      for (let i = 0; i < names.length; i += 64) out.push(...(await Promise.all(names.slice(i, i + 64).map((name) => readManifest(path.join(dir, name + MANIFEST))))))
      return out
    },

    /** The batch's files, its manifest and its bytes, decided by its messages and its number. */
    build(batch: Batch, number: number, context: { source: string; broker: Manifest['broker']; origin: Manifest['origin']; epoch?: string; identity: Identity; closedBy: string }): Prepared {
      const sequences = context.identity === 'sequence'
      const { records, keys } = sequences ? ordered(batch) : { records: batch.records, keys: batch.recordKeys }
      const text = records.length === 0 ? undefined : Buffer.from(`${records.join('\n')}\n`)
      const data = text === undefined ? undefined : gzip ? gzipSync(text, { level: 1 }) : text
      const deadOrder = sequences ? batch.dead.map((_, i) => i).sort((a, b) => (batch.deadKeys[a] as number) - (batch.deadKeys[b] as number)) : batch.dead.map((_, i) => i)
      const dead = batch.dead.length === 0 ? undefined : Buffer.from(deadOrder.map((i) => `${JSON.stringify(batch.dead[i] satisfies DeadLetter)}\n`).join(''))
      const dataHash = data === undefined ? null : sha256(data)
      const deadHash = dead === undefined ? undefined : sha256(dead)
      const name = `${String(number).padStart(8, '0')}-${(dataHash ?? deadHash)!.slice(0, 12)}`
      const deadKeys = deadOrder.map((i) => batch.deadKeys[i])
      const all = [...keys, ...deadKeys] as number[]
      const manifest: Manifest = {
        format: 'filedge-queue/1',
        source: context.source,
        broker: context.broker,
        origin: context.origin,
        ...(context.epoch === undefined ? {} : { epoch: context.epoch }),
        batch: number,
        name,
        file: data === undefined ? null : dataName(name),
        bytes: data?.length ?? 0,
        sha256: dataHash,
        records: records.length,
        ...(sequences ? { first: Math.min(...all), last: Math.max(...all), sequences: toRanges(keys as number[]) } : { ids: keys as string[] }),
        deadLetters:
          dead === undefined
            ? null
            : {
                file: `${DEAD_LETTER_DIR}/${name}.ndjson`,
                count: batch.dead.length,
                sha256: deadHash!,
                ...(sequences ? { sequences: toRanges(deadKeys as number[]) } : { ids: deadKeys.filter((key): key is string => typeof key === 'string') }),
              },
        duplicates: batch.duplicates,
        closedBy: context.closedBy,
        openedAt: new Date(batch.openedAt).toISOString(),
        closedAt: new Date().toISOString(),
      }
      return { manifest, ...(data === undefined ? {} : { data }), ...(dead === undefined ? {} : { dead }) }
    },

    /** Writes the batch's files into staging and fsyncs them: nothing is visible yet. */
    async stage(prepared: Prepared): Promise<void> {
      const { manifest } = prepared
      if (prepared.data !== undefined) await writeDurably(path.join(staging, manifest.file!), prepared.data)
      if (prepared.dead !== undefined) await writeDurably(path.join(staging, path.basename(manifest.deadLetters!.file)), prepared.dead)
      await writeDurably(path.join(staging, manifest.name + MANIFEST), manifestText(manifest))
    },

    /** Data and dead letters in, then the manifest (see above). */
    publish,

    /**
     * Finishes the promotion of a batch the ledger recorded but a stop cut
     * short, from staging: true when its manifest is in place now, false when
     * its files are gone (its messages were never acknowledged: they come back).
     */
    async finish(name: string): Promise<boolean> {
      if ((await manifestNames()).includes(name)) return true
      const staged = path.join(staging, name + MANIFEST)
      const manifest = await readManifest(staged).catch(() => undefined)
      if (manifest === undefined) return false
      const whole = async (file: string, hash: string) => (await sha256Of(path.join(staging, path.basename(file)))) === hash || (await sha256Of(path.join(dir, file))) === hash
      if (manifest.file !== null && !(await whole(manifest.file, manifest.sha256!))) return false
      if (manifest.deadLetters !== null && !(await whole(manifest.deadLetters.file, manifest.deadLetters.sha256))) return false
      await publish(manifest)
      return true
    },

    /**
     * Removes what a promotion cut short left behind (under the lease:
     * nobody else is promoting): staging, and data or dead-letter files
     * without a manifest. None of them was ever listed.
     */
    async sweep(): Promise<string[]> {
      const manifests = new Set(await manifestNames())
      const removed: string[] = []
      for (const entry of await entries(dir)) {
        const name = DATA.exec(entry)?.[1]
        if (name !== undefined && !manifests.has(name)) {
          await rm(path.join(dir, entry), { force: true })
          removed.push(entry)
        }
      }
      for (const entry of await entries(deadDir)) {
        const name = /^(\d{8}-[0-9a-f]{12})\.ndjson$/.exec(entry)?.[1]
        if (name !== undefined && !manifests.has(name)) {
          await rm(path.join(deadDir, entry), { force: true })
          removed.push(`${DEAD_LETTER_DIR}/${entry}`)
        }
      }
      await rm(staging, { recursive: true, force: true })
      await mkdir(staging, { recursive: true })
      return removed
    },
  }
}

export type Folder = ReturnType<typeof createFolder>

/** One key a line, each value on its line: a manifest of a thousand ids is a thousand-id line, not a thousand lines. */
function manifestText(manifest: Manifest): string {
  return `{\n${Object.entries(manifest)
    .map(([key, value]) => `  ${JSON.stringify(key)}: ${JSON.stringify(value)}`)
    .join(',\n')}\n}\n`
}

/** A data file's manifest, by the data file's absolute path; undefined when it has none. */
export async function manifestOf(file: string): Promise<Manifest | undefined> {
  const name = DATA.exec(path.basename(file))?.[1]
  if (name === undefined) return undefined
  const text = await readFile(path.join(path.dirname(file), name + MANIFEST), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined
    throw error
  })
  return text === undefined ? undefined : (JSON.parse(text) as Manifest)
}

