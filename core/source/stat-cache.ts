import type { ResolvedPipeline } from '../config/types.js'
import type { BeforeHashResult, FileCandidate } from '../hooks.js'
import type { HeldStat, LedgerStore, SettledStat } from '../ledger/types.js'
import type { Plugin } from '../plugin.js'

/** What the stat cache says of a listed file whose entry matches it: skip it, and why. */
function verdict(candidate: FileCandidate, known: SettledStat | HeldStat): BeforeHashResult | undefined {
  if (known.version !== candidate.version || known.size !== candidate.size) return undefined
  if (known.state === 'COMMITTED') return { skip: 'already committed (unchanged since it was read)', reason: 'committed', hash: known.hash }
  if (known.state === 'PROCESSING') return { skip: `being loaded by ${known.worker ?? 'another worker'}`, reason: 'held', hash: known.hash }
  return {
    skip: `failed ${known.attempts} times (retry.attempts is ${candidate.pipeline.retry.attempts}); run \`filedge requeue\` to try again`,
    reason: 'terminal',
    hash: known.hash,
  }
}

/**
 * The stat cache, as a built-in plugin on `beforeHash`: a file whose
 * `(path, version, size)` the ledger remembers (claim records it) and whose
 * bytes are settled — COMMITTED, or FAILED with no attempts left — is skipped
 * without reading a byte or writing to the ledger. That is what makes a
 * no-op rerun over 10,000 files (or S3 objects) a listing and nothing else.
 *
 * The cache is read once per run (in watch mode, per config loaded), before
 * the sources list, and an entry serves once: a path listed again in the same session (a watcher's event,
 * a poll) means something happened to it, so it is read again. The entry
 * holds the file's state at that read: a file requeued later in the session
 * is picked up when it is listed again. Disable it with
 * `disablePlugins: ['filedge:stat-cache']`; another `beforeHash` tap
 * (a cache of its own) can run before or instead of it.
 */
export function statCachePlugin(ledger: LedgerStore): Plugin {
  const name = 'filedge:stat-cache'
  return {
    name,
    apply({ hooks }) {
      let caches = new Map<string, Map<string, SettledStat>>()
      // Read before the sources list, so the per-file check is synchronous: a sync tap costs a no-op rerun
      // over 2,000 files ~4 ms less than an async one (measured), and a rerun is mostly these checks.
      hooks.beforeRun.tapPromise(name, async ({ pipelines }) => {
        const read = await Promise.all(pipelines.map(async (pipeline) => [pipeline.name, await ledger.settledStats(pipeline.name, pipeline.retry.attempts)] as const))
        caches = new Map(read.map(([pipeline, entries]) => [pipeline, new Map(entries.map((entry) => [entry.path, entry]))]))
      })
      hooks.beforeHash.tap(name, (candidate) => {
        const cache = caches.get(candidate.pipeline.name)
        const settled = cache?.get(candidate.path)
        if (settled === undefined) return undefined
        cache!.delete(candidate.path)
        return verdict(candidate, settled)
      })
      if (ledger.knownStats !== undefined) {
        // Asked once another worker shows itself (a file it holds): a worker alone pays no round trip per file for it.
        let shared = false
        hooks.fileSkipped.tap(name, ({ reason }) => {
          if (reason === 'held') shared = true
        })
        const ask = askedTogether(ledger.knownStats.bind(ledger))
        hooks.beforeHash.tapPromise(name, async (candidate) => (shared ? ask(candidate) : undefined))
      }
    },
  }
}

/**
 * A ledger many workers share (Postgres) is asked again, for files the cache
 * read at the start does not settle: another worker may have committed or
 * claimed them since. Without this, two workers listing the same files read,
 * hashed and claimed every file, each losing half the claims to the other
 * (200 files × 1,000 rows: ~90 lost claims per worker, each a read and hash
 * of the file and two statements). The files asked about in one event-loop
 * turn go in one query per pipeline.
 */
function askedTogether(knownStats: NonNullable<LedgerStore['knownStats']>): (candidate: FileCandidate) => Promise<BeforeHashResult | undefined> {
  let asked = new Map<ResolvedPipeline, { candidate: FileCandidate; resolve: (result: BeforeHashResult | undefined) => void }[]>()
  const ask = () => {
    const batch = asked
    asked = new Map()
    for (const [pipeline, waiting] of batch) {
      knownStats(pipeline.name, [...new Set(waiting.map(({ candidate }) => candidate.path))], pipeline.retry.attempts).then(
        (known) => {
          const byPath = new Map(known.map((entry) => [entry.path, entry]))
          for (const { candidate, resolve } of waiting) {
            const entry = byPath.get(candidate.path)
            resolve(entry === undefined ? undefined : verdict(candidate, entry))
          }
        },
        // Only a shortcut: unanswered, the files are read and claimed, and the claim says what the ledger says.
        () => waiting.forEach(({ resolve }) => resolve(undefined)),
      )
    }
  }
  return (candidate) =>
    new Promise((resolve) => {
      if (asked.size === 0) setImmediate(ask)
      const waiting = asked.get(candidate.pipeline) ?? []
      waiting.push({ candidate, resolve })
      asked.set(candidate.pipeline, waiting)
    })
}
