/** One holder at a time, in arrival order. */
export interface Mutex {
  run<T>(task: () => Promise<T>): Promise<T>
}

export function createMutex(): Mutex {
  let tail: Promise<unknown> = Promise.resolve()
  return {
    run(task) {
      const result = tail.then(task)
      tail = result.catch(() => undefined)
      return result
    },
  }
}

/** Runs `worker` over `items` with at most `limit` in flight; resolves when all have settled. */
export async function forEachLimit<T>(items: Iterable<T>, limit: number, worker: (item: T) => Promise<void>): Promise<void> {
  const iterator = items[Symbol.iterator]()
  const lanes = Array.from({ length: Math.max(1, limit) }, async () => {
    for (let next = iterator.next(); !next.done; next = iterator.next()) await worker(next.value)
  })
  await Promise.all(lanes)
}

/**
 * Resolves after `ms`, or at once when `signal` aborts. The abort listener is
 * removed when the timer fires: retry loops sleep many times on one signal,
 * and leaving one listener per sleep leaked them (Node warned past 10).
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer)
      resolve()
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
