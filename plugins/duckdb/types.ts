import type { ColumnType, DriftCheck, TableColumn } from '../../core/index.js'

/**
 * DuckDB column types for filedge's column types. Timestamps are TIMESTAMPTZ
 * because every coerced timestamp is a UTC instant; json is DuckDB's JSON
 * (VARCHAR underneath, with the json functions available on it).
 */
export function duckdbType(column: Pick<TableColumn, 'type' | 'precision' | 'scale'>): string {
  switch (column.type) {
    case 'string':
      return 'VARCHAR'
    case 'integer':
      return 'BIGINT'
    case 'float':
      return 'DOUBLE'
    case 'decimal':
      return `DECIMAL(${column.precision ?? 38},${column.scale ?? 9})`
    case 'boolean':
      return 'BOOLEAN'
    case 'date':
      return 'DATE'
    case 'timestamp':
      return 'TIMESTAMPTZ'
    case 'json':
      return 'JSON'
  }
}

/** information_schema spells some types differently from DDL. */
const CATALOG_NAMES: Partial<Record<ColumnType, readonly string[]>> = {
  timestamp: ['TIMESTAMP WITH TIME ZONE', 'TIMESTAMPTZ'],
  // A wider integer stores every BIGINT; a JSON column created by hand as VARCHAR stores the same text.
  integer: ['BIGINT', 'HUGEINT'],
  json: ['JSON', 'VARCHAR'],
}

/**
 * A decimal column must match precision and scale exactly: DuckDB casts a
 * DECIMAL(18,4) value into DECIMAL(18,2) by rounding, which is exactly what
 * filedge's coercion refuses to do.
 */
export const duckdbDriftCheck: DriftCheck = {
  expectedType: (_type, column) => duckdbType(column),
  compatible(actual, type, column) {
    const found = actual.type.toUpperCase().replace(/\s*,\s*/g, ',')
    return (CATALOG_NAMES[type] ?? [duckdbType(column)]).includes(found)
  },
}
