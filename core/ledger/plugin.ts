import type { ResolvedConfig } from '../config/types.js'
import { claimLost, describeError } from '../errors.js'
import type { Lease } from '../hooks.js'
import type { Plugin } from '../plugin.js'
import { pipelineCode } from '../stages/code.js'
import type { LeaseKey, LedgerStore } from './types.js'
import { shownPath } from '../quarantine/sidecar.js'

/**
 * The ledger as a plugin: it answers `claim` with a lease whose outcome
 * methods are fenced by the lease token. A `pre` plugin can veto a claim
 * before it (return a skip); nothing after it sees claimed files twice.
 */
export function ledgerPlugin(store: LedgerStore, config: ResolvedConfig): Plugin {
  const ttlMs = config.lease.ttlMs
  return {
    name: 'filedge:ledger',
    apply({ hooks, worker }) {
      // Whether a plugin acts on a COMMITTED record (notifies, copies), or `onCommitted` archives or deletes the
      // source's copy: then the record must be durable before that runs. filedge's own reporters only print it.
      const actedOn = () => hooks.afterCommit.taps.some((tap) => tap.name !== 'filedge:reporter')
      hooks.claim.tapPromise('filedge:ledger', async ({ pipeline, file, worker, remember, version, arrival }) => {
        const result = await store.claim({
          pipeline: pipeline.name,
          hash: file.hash,
          path: file.path,
          size: file.size,
          worker,
          maxAttempts: pipeline.retry.attempts,
          maxLapses: pipeline.retry.lapses,
          ttlMs,
          remember,
          version,
          // Truncate: the newest arrival wins, even when its bytes equal an older snapshot's.
          reopenOnArrival: pipeline.writeMode.kind === 'truncate' && arrival !== false,
        })
        if (result.status === 'skipped') return result
        const key: LeaseKey = { pipeline: pipeline.name, hash: file.hash, token: result.token, worker, attempt: result.attempt }
        const lease: Lease = {
          token: result.token,
          attempt: result.attempt,
          loadId: result.loadId,
          verify: result.verify,
          ...(result.lapsed === undefined ? {} : { lapsed: result.lapsed }),
          heartbeat: () => store.heartbeat(key, ttlMs),
          isHeld: () => store.holds(key),
          async complete(rows, healed, marked, quarantined) {
            const code = marked === undefined ? pipelineCode(pipeline)?.code : (marked ?? undefined)
            const options = {
              healed,
              durable: actedOn() || pipeline.onCommitted !== undefined,
              ...(code === undefined ? {} : { code }),
              ...(quarantined === undefined ? {} : { quarantined: { rows: quarantined.rows, sidecar: shownPath(config.root, quarantined.sidecar) } }),
            }
            if (!(await store.complete(key, rows, options))) throw claimLost(file.path, 'another worker took the file over before it was marked committed')
          },
          async fail(error, exhausted) {
            const outcome = await store.fail(key, describeError(error), pipeline.retry.attempts, exhausted)
            if (outcome.lost) throw claimLost(file.path, 'another worker took the file over before its failure was recorded')
            return { terminal: outcome.terminal }
          },
          async release() {
            await store.release(key)
          },
        }
        return { status: 'claimed', lease, isNew: result.isNew, reclaimed: result.reclaimed, retried: result.retried, reopened: result.reopened }
      })
      // What each pipeline's stages hash is made of, once per code: `filedge stages --why` compares a stale file's code with it.
      hooks.beforeRun.tapPromise('filedge:ledger', async ({ pipelines }) => {
        for (const pipeline of pipelines) {
          const code = pipelineCode(pipeline)
          if (code !== undefined) await store.recordCode(pipeline.name, code.code, JSON.stringify(code.stages))
        }
      })
      hooks.fileArchived.tapPromise('filedge:ledger', async ({ pipeline, path, hash, outcome }) => {
        await store.archived(pipeline.name, hash, path, worker, outcome)
      })
    },
  }
}
