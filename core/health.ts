import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import path from 'node:path'
import { FiledgeError } from './errors.js'

/**
 * For healthchecks of what lives in a local file that the first run creates
 * (a SQLite or DuckDB database, the SQLite ledger): when the file is not
 * there yet, it is healthy if it can be created, that is if the nearest
 * directory on its way that exists is one this process may write in.
 * Throws PLUGIN_ERROR saying which directory and why not.
 */
export async function assertCreatable(file: string, what: string): Promise<void> {
  let dir = path.dirname(file)
  for (;;) {
    const found = await stat(dir).catch(() => undefined)
    if (found !== undefined) {
      if (!found.isDirectory()) throw new FiledgeError('PLUGIN_ERROR', `${what}: ${dir} is not a directory, so ${file} cannot be created`)
      await access(dir, constants.W_OK | constants.X_OK).catch(() => {
        throw new FiledgeError('PLUGIN_ERROR', `${what}: ${file} does not exist yet and ${dir} is not writable, so it cannot be created`)
      })
      return
    }
    const parent = path.dirname(dir)
    if (parent === dir) throw new FiledgeError('PLUGIN_ERROR', `${what}: no directory on the way to ${file} exists`)
    dir = parent
  }
}
