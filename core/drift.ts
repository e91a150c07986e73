import type { ColumnType } from './config/types.js'
import { schemaDrift, type FiledgeError } from './errors.js'
import { PROVENANCE_COLUMNS, type TableColumn, type TableSpec } from './rows.js'

/** A column as a destination reports it from its catalog. */
export interface ActualColumn {
  readonly name: string
  /** The destination's own type name, for the message. */
  readonly type: string
  readonly notNull: boolean
}

/**
 * The declared column comes as a second argument because a type alone does
 * not say everything: a decimal(18,4) column must not pass for a DECIMAL(18,2)
 * table column that would round every value.
 */
export interface DriftCheck {
  /** The destination type a column of this filedge type should have, for the message. */
  expectedType(type: ColumnType, column: TableColumn): string
  /** Whether an existing column's type stores this filedge type. */
  compatible(actual: ActualColumn, type: ColumnType, column: TableColumn): boolean
}

/**
 * Compares a table's actual columns with what the pipeline declares (plus the
 * provenance columns) and lists every difference: missing, extra, wrong type,
 * wrong nullability. Empty when the table matches. Shared by destinations so
 * every drift message reads the same.
 */
export function diffColumns(table: TableSpec, actual: readonly ActualColumn[], check: DriftCheck): string[] {
  const expected = [...table.columns, ...PROVENANCE_COLUMNS]
  const byName = new Map(actual.map((column) => [column.name, column]))
  const diff: string[] = []
  for (const column of expected) {
    const found = byName.get(column.name)
    if (found === undefined) {
      diff.push(`missing column ${JSON.stringify(column.name)} (expected ${check.expectedType(column.type, column)}${column.required ? ' NOT NULL' : ''})`)
      continue
    }
    if (!check.compatible(found, column.type, column)) {
      diff.push(`column ${JSON.stringify(column.name)} is ${found.type}, expected ${check.expectedType(column.type, column)} (${column.type})`)
    }
    if (found.notNull !== column.required) {
      diff.push(`column ${JSON.stringify(column.name)} is ${found.notNull ? 'NOT NULL' : 'nullable'}, expected ${column.required ? 'NOT NULL (required: true)' : 'nullable'}`)
    }
  }
  const names = new Set(expected.map((column) => column.name))
  for (const column of actual) {
    if (!names.has(column.name)) diff.push(`extra column ${JSON.stringify(column.name)} (${column.type}) is not declared in the pipeline`)
  }
  return diff
}

export function assertNoDrift(table: TableSpec, actual: readonly ActualColumn[], check: DriftCheck, describe = table.name): void {
  const diff = diffColumns(table, actual, check)
  if (diff.length > 0) throw schemaDrift(describe, diff) satisfies FiledgeError
}
