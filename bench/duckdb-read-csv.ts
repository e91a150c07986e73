import { DuckDBInstance } from '@duckdb/node-api'

/**
 * The native side of the DuckDB suite: the orders CSV loaded as a user would
 * by hand — DuckDB's `read_csv` with the column types declared (no sniffing)
 * into a typed table. Its own process, so it pays process start and the final
 * checkpoint like the filedge CLI does. Prints the number of rows inserted,
 * then the table's columns as JSON.
 *
 *   node dist/bench/duckdb-read-csv.js <database> <csv> [plain|same]
 *
 * plain: the orders columns alone. same: filedge's table, provenance columns
 * included, from a CSV that holds their values (bench/data.ts, withProvenance).
 */

const ORDERS = "'order_id': 'VARCHAR', 'customer_id': 'BIGINT', 'amount': 'DOUBLE', 'order_date': 'DATE', 'status': 'VARCHAR', 'note': 'VARCHAR'"
const PROVENANCE = "'_source_file_hash': 'VARCHAR', '_ingested_at': 'TIMESTAMPTZ', '_source_row_number': 'BIGINT'"
const NOT_NULL = new Set(['order_id', 'customer_id', 'amount', 'order_date', '_source_file_hash', '_ingested_at', '_source_row_number'])

const [database, csv, kind = 'plain'] = process.argv.slice(2)
const columns = kind === 'same' ? `${ORDERS}, ${PROVENANCE}` : ORDERS
const definitions = [...columns.matchAll(/'(\w+)': '(\w+)'/g)].map(([, name, type]) => `${name} ${type}${NOT_NULL.has(name) ? ' NOT NULL' : ''}`)
const instance = await DuckDBInstance.create(database)
const connection = await instance.connect()
await connection.run(`CREATE TABLE orders (${definitions.join(', ')})`)
const inserted = await connection.run(`INSERT INTO orders SELECT * FROM read_csv($csv, header = true, auto_detect = false, columns = {${columns}})`, { csv })
const shape = (await connection.runAndReadAll("SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position")).getRowObjectsJS()
connection.closeSync()
instance.closeSync()
console.log(inserted.rowsChanged)
console.log(JSON.stringify(shape))
