import { DuckDBInstance } from '@duckdb/node-api'

/**
 * The native side of the Parquet suite: a Parquet file loaded as a user
 * would by hand — DuckDB's `read_parquet` into a table of the file's own
 * columns (made from the file's schema, DuckDB's types). Its own process, so it pays
 * process start and the final checkpoint like the filedge CLI does. Prints
 * the number of rows inserted.
 *
 *   node dist/bench/duckdb-read-parquet.js <database> <parquet>
 */

const [database, file] = process.argv.slice(2)
const instance = await DuckDBInstance.create(database)
const connection = await instance.connect()
await connection.run('CREATE TABLE flights AS SELECT * FROM read_parquet($file) LIMIT 0', { file })
const inserted = await connection.run('INSERT INTO flights SELECT * FROM read_parquet($file)', { file })
connection.closeSync()
instance.closeSync()
console.log(inserted.rowsChanged)
