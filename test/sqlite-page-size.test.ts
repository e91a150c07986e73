import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { resolveConfig } from '../core/config/resolve.js'
import { createLogger } from '../core/logger.js'
import { sqlite } from '../plugins/sqlite/index.js'

/** The SQLite destination's `pageSize`: what a database it creates gets, and that an existing one keeps its own. */

let dirs: string[] = []
afterEach(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  dirs = []
})

function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-page-size-'))
  dirs.push(dir)
  return dir
}

async function pageSizeAfterOpen(dir: string, options: { pageSize?: number } = {}): Promise<number> {
  const destination = sqlite({ path: 'x.db', ...options })
  await destination.open!({
    config: resolveConfig({ pipelines: [{ name: 'p', source: 'in', destination, table: 't', columns: { a: 'string' } }] }, { cwd: dir }),
    logger: createLogger(() => {}),
  })
  await destination.close!()
  const db = new Database(path.join(dir, 'x.db'), { readonly: true })
  try {
    return db.pragma('page_size', { simple: true }) as number
  } finally {
    db.close()
  }
}

describe('SQLite destination pageSize', () => {
  it('a database the destination creates has 16384-byte pages by default', async () => {
    expect(await pageSizeAfterOpen(tempDir())).toBe(16_384)
  })

  it('pageSize sets them for a new database', async () => {
    expect(await pageSizeAfterOpen(tempDir(), { pageSize: 4096 })).toBe(4096)
    expect(await pageSizeAfterOpen(tempDir(), { pageSize: 65_536 })).toBe(65_536)
  })

  it('an existing database keeps its own page size', async () => {
    const dir = tempDir()
    const existing = new Database(path.join(dir, 'x.db'))
    existing.pragma('page_size = 8192')
    existing.pragma('journal_mode = WAL')
    existing.exec('CREATE TABLE kept (a TEXT)')
    existing.close()
    expect(await pageSizeAfterOpen(dir, { pageSize: 65_536 })).toBe(8192)
  })

  it('refuses a page size SQLite would ignore', () => {
    for (const pageSize of [1000, 256, 131_072, 4096.5]) expect(() => sqlite({ path: 'x.db', pageSize })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }))
  })
})
