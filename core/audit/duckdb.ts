import { createRequire } from 'node:module'

/**
 * `@duckdb/node-api`, loaded with require: it is CommonJS, and an ESM import
 * of it first scans its hundred-odd files for their named exports
 * (cjs-module-lexer), which took 150 ms of every `filedge query` against
 * 75 ms this way.
 */
export const duckdb = createRequire(import.meta.url)('@duckdb/node-api') as typeof import('@duckdb/node-api')
