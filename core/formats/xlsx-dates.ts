/**
 * Excel keeps dates and times as numbers (days since an epoch, the time of
 * day as the fraction) and says a number is a date only through its cell's
 * number format. Which formats are dates is decided once per style of the
 * workbook (a few dozen), so a cell costs one array lookup.
 */

/** What a cell's number means, by its number format. */
export const NUMBER = 0
/** A date: `2024-05-01`, or with its time when the number has a fraction. */
export const DATE = 1
/** A date and time: always `2024-05-01T13:45:00`. */
export const DATE_TIME = 2
/** A time of day or a duration, no date: `13:45:00`, `36:00:00`. */
export const TIME = 3
export type NumberKind = typeof NUMBER | typeof DATE | typeof DATE_TIME | typeof TIME

/**
 * Built-in formats (ECMA-376 §18.8.30) that are dates or times: a workbook
 * refers to them by id without writing their code. 14–17 dates, 18–21 times,
 * 22 date and time, 45–47 minutes and durations. The East Asian built-ins
 * (27–36, 50–58) mean dates in one locale and times in another, and are left
 * as numbers.
 */
const BUILTIN: Readonly<Record<number, NumberKind>> = { 14: DATE, 15: DATE, 16: DATE, 17: DATE, 18: TIME, 19: TIME, 20: TIME, 21: TIME, 22: DATE_TIME, 45: TIME, 46: TIME, 47: TIME }

export function builtinKind(id: number): NumberKind {
  return BUILTIN[id] ?? NUMBER
}

/**
 * A custom format code's kind, from its first section (the one positive
 * numbers use): date letters are y, d and m for months; time letters h, s,
 * m for minutes (right after an h, or right before an s), AM/PM, A/P and
 * elapsed [h] [m] [s]. Text in quotes, escaped (`\d`) and spacing (`_d`,
 * `*d`) characters, and other brackets (`[Red]`, `[$€-407]`) are not
 * letters of the format.
 */
export function formatKind(code: string): NumberKind {
  const letters: string[] = []
  let time = false
  for (let i = 0; i < code.length; i++) {
    const c = code[i]
    if (c === ';') break
    if (c === '"') {
      const end = code.indexOf('"', i + 1)
      if (end < 0) break
      i = end
    } else if (c === '\\' || c === '_' || c === '*') {
      i++
    } else if (c === '[') {
      const end = code.indexOf(']', i)
      const inside = code.slice(i + 1, end < 0 ? code.length : end).toLowerCase()
      if (/^(h+|m+|s+)$/.test(inside)) {
        time = true
        letters.push(inside[0] === 'm' ? 'minute' : inside[0])
      }
      if (end < 0) break
      i = end
    } else if (code.startsWith('AM/PM', i) || code.startsWith('am/pm', i)) {
      time = true
      i += 4
    } else if (code.startsWith('A/P', i) || code.startsWith('a/p', i)) {
      time = true
      i += 2
    } else {
      const lower = c.toLowerCase()
      if (lower !== 'y' && lower !== 'd' && lower !== 'm' && lower !== 'h' && lower !== 's') continue
      // A run (`yyyy`, `mm`) is one letter.
      if (code[i - 1]?.toLowerCase() !== lower) letters.push(lower)
    }
  }
  let date = false
  letters.forEach((letter, index) => {
    if (letter === 'y' || letter === 'd') date = true
    else if (letter === 'h' || letter === 's' || letter === 'minute') time = true
    else if (letters[index - 1] === 'h' || letters[index + 1] === 's') time = true
    else date = true
  })
  return date ? (time ? DATE_TIME : DATE) : time ? TIME : NUMBER
}

const MS_PER_DAY = 86_400_000
/** 9999-12-31, the last day Excel (and filedge's date columns) can hold, in the 1900 system. */
const LAST_SERIAL_1900 = 2_958_465
const EPOCH_1904 = Date.UTC(1904, 0, 1)
/** Serial 61 is 1900-03-01: from there on, day 0 is 1899-12-30. */
const EPOCH_1900 = Date.UTC(1899, 11, 30)

const pad = (value: number, width = 2) => String(value).padStart(width, '0')

/**
 * A date-formatted number as ISO 8601 text, or the reason it is no date.
 * Times are rounded to the millisecond, the finest Excel shows (a serial
 * near 45,000 resolves about a microsecond: finer digits are noise). No time
 * zone: Excel has none, and a timestamp column takes the wall-clock time as
 * UTC, as it does any timestamp written without an offset.
 *
 * In the 1900 system serial 1 is 1900-01-01 and serial 60 is 1900-02-29, a
 * day that never was (Lotus 1-2-3's leap-year bug, which Excel kept): it is
 * refused, and serials 1–59 count from 1899-12-31 so that every later serial
 * is the day Excel shows. In the 1904 system serial 0 is 1904-01-01.
 */
export function serialToText(serial: number, kind: NumberKind, date1904: boolean): string | { readonly problem: string } {
  const ms = Math.round(serial * MS_PER_DAY)
  if (kind === TIME) {
    if (ms < 0) return { problem: `${serial} is a negative time` }
    return `${pad(Math.floor(ms / 3_600_000))}:${clock(ms % MS_PER_DAY).slice(3)}`
  }
  const days = Math.floor(ms / MS_PER_DAY)
  const timeOfDay = ms - days * MS_PER_DAY
  let epoch: number
  if (date1904) {
    if (days < 0) return { problem: `${serial} is before 1904-01-01, the first day of the workbook's 1904 date system` }
    epoch = EPOCH_1904
  } else {
    if (days < 1) return { problem: `${serial} is before 1900-01-01, the first day of Excel's 1900 date system` }
    if (days === 60) return { problem: `${serial} is 1900-02-29, a day Excel counts that never existed` }
    epoch = days < 60 ? EPOCH_1900 + MS_PER_DAY : EPOCH_1900
  }
  if (days > LAST_SERIAL_1900 - (date1904 ? 1462 : 0)) return { problem: `${serial} is after 9999-12-31` }
  const day = new Date(epoch + days * MS_PER_DAY)
  const text = `${pad(day.getUTCFullYear(), 4)}-${pad(day.getUTCMonth() + 1)}-${pad(day.getUTCDate())}`
  return kind === DATE && timeOfDay === 0 ? text : `${text}T${clock(timeOfDay)}`
}

/** `HH:MM:SS`, with `.fff` when there are milliseconds. */
function clock(ms: number): string {
  const seconds = Math.floor(ms / 1000)
  const fraction = ms % 1000
  const text = `${pad(Math.floor(seconds / 3600))}:${pad(Math.floor(seconds / 60) % 60)}:${pad(seconds % 60)}`
  return fraction === 0 ? text : `${text}.${pad(fraction, 3)}`
}
