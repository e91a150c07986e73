// The repository's own example: `npx filedge` loads examples/incoming/*.csv
// into .filedge/warehouse.duckdb (DuckDB: an analytical database in one file).
// Copy it as a starting point for your own.
import { defineConfig } from 'filedge'
import { duckdb } from 'filedge/plugins/duckdb'
import { revenue, weekly } from './examples/ponds/revenue.js'

export default defineConfig({
  ledger: 'sqlite:.filedge/ledger.db',
  // Ponds downstream of the orders table: `npx filedge pond pulse weekly` (docs/ponds.md).
  plugins: [revenue, weekly],
  pipelines: [
    {
      name: 'orders',
      source: { dir: 'examples/incoming', include: ['orders*.csv', 'orders*.csv.gz'] },
      format: 'csv',
      destination: duckdb({ path: '.filedge/warehouse.duckdb' }),
      table: 'orders',
      columns: {
        order_id: { type: 'string', required: true },
        customer_id: { type: 'integer', required: true },
        amount: { type: 'decimal', precision: 12, scale: 2, required: true },
        order_date: { type: 'date', required: true },
        status: 'string',
        shipped_at: 'timestamp',
      },
      retry: { attempts: 3 },
    },
  ],
})
