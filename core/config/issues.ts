import type { z } from 'zod'
import { showValue } from '../errors.js'

/**
 * Turns schema issues into lines a human can act on:
 * `pipelines[0].columns.amount.type: expected one of string, integer, …; got "flaot"`.
 */

type Issue = z.core.$ZodIssue

export function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`
    else if (/^[A-Za-z_$][\w$]*$/.test(String(key))) out += out === '' ? String(key) : `.${String(key)}`
    else out += `[${JSON.stringify(String(key))}]`
  }
  return out === '' ? '(config)' : out
}

function describeInput(input: unknown): string {
  if (input === undefined) return 'nothing'
  if (Array.isArray(input)) return 'an array'
  if (typeof input === 'function') return 'a function'
  if (typeof input === 'object' && input !== null) return 'an object'
  return showValue(input)
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, index) => index)
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1))
      previous = current
    }
  }
  return row[b.length]
}

export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best
}

/** The deepest branch of a failed union is the one the user meant. */
function pickUnionBranch(branches: readonly (readonly Issue[])[]): readonly Issue[] {
  let best = branches[0] ?? []
  let bestDepth = -1
  for (const branch of branches) {
    const depth = Math.max(...branch.map((issue) => issue.path.length + (issue.code === 'invalid_type' ? 0 : 1)))
    if (depth > bestDepth) {
      best = branch
      bestDepth = depth
    }
  }
  return best
}

export function formatIssues(
  issues: readonly Issue[],
  knownKeys: (path: readonly PropertyKey[]) => readonly string[],
  prefix: readonly PropertyKey[] = [],
): string[] {
  const lines: string[] = []
  for (const issue of issues) {
    const path = [...prefix, ...issue.path]
    switch (issue.code) {
      case 'invalid_value':
        lines.push(`${formatPath(path)}: expected one of ${issue.values.map((value) => String(value)).join(', ')}; got ${describeInput(issue.input)}`)
        break
      case 'invalid_type':
        lines.push(
          issue.input === undefined
            ? `${formatPath(path)}: is required (expected ${issue.expected})`
            : `${formatPath(path)}: expected ${issue.expected}; got ${describeInput(issue.input)}`,
        )
        break
      case 'unrecognized_keys':
        for (const key of issue.keys) {
          const suggestion = closest(key, knownKeys(path))
          const hint = suggestion === undefined ? `known keys: ${knownKeys(path).join(', ')}` : `did you mean "${suggestion}"?`
          lines.push(`${formatPath([...path, key])}: unknown key; ${hint}`)
        }
        break
      case 'invalid_union':
        if (issue.errors.length > 0) lines.push(...formatIssues(pickUnionBranch(issue.errors), knownKeys, path))
        else lines.push(`${formatPath(path)}: ${issue.message}`)
        break
      default:
        // A `key` written inline instead of env('NAME') is a secret: the message never repeats it.
        lines.push(`${formatPath(path)}: ${issue.message}${issue.input === undefined || typeof issue.input === 'object' || path.at(-1) === 'key' ? '' : `; got ${describeInput(issue.input)}`}`)
    }
  }
  return lines
}
