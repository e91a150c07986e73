/** The reporter names, apart from the reporters themselves so the CLI can parse `--reporter` without loading them. */
export const REPORTERS = ['default', 'simple', 'json', 'silent'] as const
export type ReporterName = (typeof REPORTERS)[number]
