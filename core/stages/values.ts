import { createHash, type Hash } from 'node:crypto'

/**
 * A value a stage's output depends on (a declared input, its options),
 * hashed by what it is, so a change to it is never missed and an equal value
 * always hashes the same, in any process.
 *
 * Each kind is tagged, so `'1'` ≠ `1` ≠ `1n`, `null` ≠ `undefined`, and
 * numbers keep -0, NaN and ±Infinity apart from everything else. Plain
 * objects are hashed with their keys sorted: `{ a, b }` = `{ b, a }`, as for
 * the JSON-like options they mostly are. Decision: Maps and Sets keep their
 * insertion order, because iterating one is how a stage reads it, and a Map
 * is often chosen for its order. Only the kinds whose whole state is visible
 * are taken: JSON-like values, Date, RegExp (source and flags), Buffer,
 * Uint8Array, Map and Set. Everything else (a function, whose closure cannot
 * be seen; a symbol; a class instance, Promise or WeakMap; a cycle) is
 * refused through `refuse(path, reason)`, never skipped.
 */
export function hashValue(value: unknown, path: string, refuse: (path: string, reason: string) => never): string {
  const hash = createHash('sha256')
  writeValue(value, path, new Set(), hash, refuse)
  return hash.digest('hex')
}

function writeValue(value: unknown, path: string, open: Set<object>, hash: Hash, refuse: (path: string, reason: string) => never): void {
  switch (typeof value) {
    case 'undefined':
      return void hash.update('u')
    case 'boolean':
      return void hash.update(value ? 't' : 'f')
    case 'number':
      return void hash.update(`n${Object.is(value, -0) ? '-0' : String(value)};`)
    case 'bigint':
      return void hash.update(`i${value.toString()};`)
    case 'string':
      return void hash.update(`s${JSON.stringify(value)}`)
    case 'function':
      return refuse(path, 'is a function, whose closure cannot be hashed; declare the values it uses instead')
    case 'symbol':
      return refuse(path, 'is a symbol, which has no value to hash')
  }
  if (value === null) return void hash.update('z')
  const object = value as object
  if (open.has(object)) refuse(path, 'refers back to a value that contains it (a cycle)')
  const prototype: unknown = Object.getPrototypeOf(object)
  if (prototype === Date.prototype) {
    const time = (object as Date).getTime()
    return void hash.update(`d${Number.isNaN(time) ? 'invalid' : (object as Date).toISOString()};`)
  }
  if (prototype === RegExp.prototype) return void hash.update(`r${JSON.stringify([(object as RegExp).source, (object as RegExp).flags])}`)
  if (Buffer.isBuffer(object) || prototype === Uint8Array.prototype) {
    const bytes = object as Uint8Array
    hash.update(`${Buffer.isBuffer(object) ? 'B' : 'U'}${bytes.length}:`)
    return void hash.update(bytes)
  }
  if (Object.getOwnPropertySymbols(object).length > 0) refuse(path, 'has symbol keys, which cannot be hashed')
  open.add(object)
  if (Array.isArray(object)) {
    if (Object.keys(object).length > countPresent(object)) refuse(path, 'is an array with named properties, which cannot be hashed')
    hash.update('[')
    for (let i = 0; i < object.length; i++) {
      if (i in object) writeValue(object[i], `${path}[${i}]`, open, hash, refuse)
      else hash.update('h')
    }
    hash.update(']')
  } else if (prototype === Map.prototype) {
    hash.update(`M${(object as Map<unknown, unknown>).size}:`)
    let i = 0
    for (const [key, item] of object as Map<unknown, unknown>) {
      writeValue(key, `${path}[entry ${i}].key`, open, hash, refuse)
      writeValue(item, `${path}[entry ${i}].value`, open, hash, refuse)
      i++
    }
  } else if (prototype === Set.prototype) {
    hash.update(`S${(object as Set<unknown>).size}:`)
    let i = 0
    for (const item of object as Set<unknown>) writeValue(item, `${path}[item ${i++}]`, open, hash, refuse)
  } else if (prototype === Object.prototype || prototype === null) {
    hash.update('{')
    for (const key of Object.keys(object).sort()) {
      hash.update(`s${JSON.stringify(key)}`)
      writeValue((object as Record<string, unknown>)[key], `${path}${member(key)}`, open, hash, refuse)
    }
    hash.update('}')
  } else {
    refuse(path, `is ${describeInstance(prototype)}; a declared value must be JSON-like, a Date, RegExp, Buffer, Uint8Array, Map or Set`)
  }
  open.delete(object)
}

function countPresent(array: readonly unknown[]): number {
  let present = 0
  for (let i = 0; i < array.length; i++) if (i in array) present++
  return present
}

/** `.name` for a key that reads as an identifier, `["a b"]` for any other. */
export function member(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`
}

function describeInstance(prototype: unknown): string {
  const name = (prototype as { constructor?: { name?: unknown } } | null)?.constructor?.name
  return typeof name === 'string' && name !== '' ? `a ${name}` : 'an instance of a class'
}
