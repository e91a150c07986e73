/**
 * Identifiers are always quoted, never interpolated raw: a column named
 * `a"b; drop table x` is just a column. Values always travel as parameters.
 */
export function quoteIdentifier(name: string): string {
  if (name.includes('\0')) throw new Error(`identifier contains a NUL character: ${JSON.stringify(name)}`)
  return `"${name.replace(/"/g, '""')}"`
}
