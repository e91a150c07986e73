import path from 'node:path'
import Database from 'better-sqlite3'
import { sqlite } from '../plugins/sqlite/index.js'
import { testDestination } from './conformance/index.js'

testDestination({
  name: 'sqlite',
  make(dir) {
    const file = path.join(dir, 'warehouse.db')
    return {
      destination: sqlite({ path: file }),
      async rows(table) {
        const db = new Database(file, { readonly: true })
        db.defaultSafeIntegers(true)
        try {
          return db.prepare(`SELECT * FROM "${table.replace(/"/g, '""')}"`).all() as Record<string, unknown>[]
        } finally {
          db.close()
        }
      },
    }
  },
})
