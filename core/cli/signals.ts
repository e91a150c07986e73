/** Exit codes of a second signal, as shells report a process killed by it. */
const EXIT_ON_SIGNAL = { SIGINT: 130, SIGTERM: 143 } as const

/**
 * Runs `task` with a signal that the first Ctrl-C (or SIGTERM) aborts: the
 * task stops gracefully (files in flight roll back and are released). A
 * second signal exits at once: leases expire and another run reclaims them.
 */
export async function untilStopped<T>(task: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController()
  const stop = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(EXIT_ON_SIGNAL[signal as keyof typeof EXIT_ON_SIGNAL] ?? 1)
    controller.abort()
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  try {
    return await task(controller.signal)
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
}
