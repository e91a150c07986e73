import path from 'node:path'
import { duckdb } from '../plugins/duckdb/index.js'
import { testDestination } from './conformance/index.js'
import { readDuckdb } from './helpers/duckdb.js'

testDestination({
  name: 'duckdb',
  make(dir) {
    const file = path.join(dir, 'warehouse.duckdb')
    return {
      destination: duckdb({ path: file }),
      // Decimals as text: the JS conversion would turn them into doubles and hide a rounding.
      rows: async (table) => {
        const columns = await readDuckdb(file, `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '${table.replace(/'/g, "''")}' ORDER BY ordinal_position`)
        const select = columns.map(({ column_name, data_type }) => {
          const name = `"${String(column_name).replace(/"/g, '""')}"`
          return String(data_type).startsWith('DECIMAL') ? `CAST(${name} AS VARCHAR) AS ${name}` : name
        })
        return readDuckdb(file, `SELECT ${select.join(', ')} FROM "${table.replace(/"/g, '""')}"`)
      },
    }
  },
})
