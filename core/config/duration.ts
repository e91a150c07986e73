import type { Duration } from './types.js'

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const

/** `'30s'` → 30000. Bare numbers are milliseconds. Assumes the value passed schema validation. */
export function toMs(duration: Duration): number {
  if (typeof duration === 'number') return duration
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(duration)
  if (match === null) throw new Error(`not a duration: ${duration}`)
  return Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS])
}
