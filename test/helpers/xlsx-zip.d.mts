/** Types of xlsx-zip.mjs (plain JavaScript, so that the bad-input corpus's setup files can use it too). */
export interface Deflated {
  readonly bytes: Buffer
  readonly size: number
  readonly crc: number
}
export type Part = { readonly name: string; readonly text: string } | { readonly name: string; readonly deflated: Deflated }
export type Content = { readonly text: string } | { readonly deflated: Deflated }
export function zip(parts: readonly Part[]): Buffer
export function workbook(sheet: Content, sharedStrings?: Content): Part[]
export function sheetXml(rows: readonly (readonly (string | number)[])[], before?: string): string
export function deflatedRepeat(head: string, piece: string, times: number, tail: string): Deflated
