import { DuckDBInstance } from '@duckdb/node-api'

/**
 * The native side of the DuckDB suite: the orders CSV loaded as a user would
 * by hand — DuckDB's `read_csv` with the column types declared (no sniffing)
 * into the typed table filedge creates, less the provenance columns. Its own
 * process, so it pays process start and the final checkpoint like the filedge
 * CLI does. Prints the number of rows inserted.
 *
 *   node dist/bench/duckdb-read-csv.js <database> <csv>
 */

const [database, csv] = process.argv.slice(2)
const instance = await DuckDBInstance.create(database)
const connection = await instance.connect()
await connection.run('CREATE TABLE orders (order_id VARCHAR NOT NULL, customer_id BIGINT NOT NULL, amount DOUBLE NOT NULL, order_date DATE NOT NULL, status VARCHAR, note VARCHAR)')
const inserted = await connection.run(
  "INSERT INTO orders SELECT * FROM read_csv($csv, header = true, auto_detect = false, columns = {'order_id': 'VARCHAR', 'customer_id': 'BIGINT', 'amount': 'DOUBLE', 'order_date': 'DATE', 'status': 'VARCHAR', 'note': 'VARCHAR'})",
  { csv },
)
connection.closeSync()
instance.closeSync()
console.log(inserted.rowsChanged)
