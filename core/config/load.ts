import { createRequire } from 'node:module'
import path from 'node:path'
import { existsSync, readFileSync } from 'node:fs'
import type { Loader } from 'cosmiconfig'
import { FiledgeError, configInvalid } from '../errors.js'
import type { Plugin } from '../plugin.js'
import { CONFIG_SEARCH_PLACES } from './places.js'
import { loadPresets } from './presets.js'
import { resolveConfig } from './resolve.js'
import type { ResolvedConfig, UserConfig } from './types.js'

export { CONFIG_SEARCH_PLACES }

/**
 * cosmiconfig's own TypeScript loader needs the TypeScript compiler API, which
 * TypeScript 7 (native) does not ship; jiti transpiles the config on the fly.
 * A fresh jiti with no module cache per load, so a watcher reloading the
 * config sees edits to the files it imports too.
 */
const loadWithJiti: Loader = async (filepath) => importFresh(filepath, filepath)

/**
 * jiti by `require`: its ESM entry imports the CommonJS build, and Node then
 * scans those 190 KB for named exports before running them (cjs-module-lexer),
 * which made importing jiti 120–220 ms against 30–70 ms for the same code
 * required.
 */
const requireJiti = () => createRequire(import.meta.url)('jiti') as typeof import('jiti')

async function importFresh(specifier: string, from: string): Promise<unknown> {
  const { createJiti } = requireJiti()
  const jiti = createJiti(from, { moduleCache: false, interopDefault: true })
  return jiti.import(specifier, { default: true })
}

/**
 * JSON configs cannot call `sqlite({ … })` or `s3({ … })`, so a destination
 * or a source may also be written as data, `{ type, ...options }`, and is
 * built here with the factory of the plugin of that name, imported from
 * filedge's own public entry point (`filedge/plugins/<type>`), as a
 * TypeScript config would import it. A type no entry point has is left for
 * validation to report.
 */
async function fromData(value: unknown): Promise<unknown> {
  if (typeof value !== 'object' || value === null || typeof (value as { type?: unknown }).type !== 'string') return value
  const { type, ...options } = value as { type: string }
  if (Object.values(options).some((option) => typeof option === 'function') || !/^[a-z][a-z0-9-]*$/.test(type)) return value
  let factory: ((options: unknown) => unknown) | undefined
  try {
    factory = ((await import(`filedge/plugins/${type}`)) as { default?: (options: unknown) => unknown }).default
  } catch {
    return value
  }
  return typeof factory === 'function' ? factory(options) : value
}

async function instantiatePlugins(raw: UserConfig): Promise<UserConfig> {
  if (typeof raw !== 'object' || raw === null || !Array.isArray(raw.pipelines)) return raw
  const pipelines = await Promise.all(
    raw.pipelines.map(async (pipeline) => {
      if (typeof pipeline !== 'object' || pipeline === null) return pipeline
      const { destination, source } = pipeline as { destination?: unknown; source?: unknown }
      return { ...pipeline, ...(destination === undefined ? {} : { destination: await fromData(destination) }), ...(source === undefined ? {} : { source: await fromData(source) }) }
    }),
  )
  return { ...raw, pipelines } as UserConfig
}

/**
 * The common case, a TypeScript config in the current directory (or named
 * with --config), is loaded with jiti directly: cosmiconfig, its YAML and
 * JSON parsers and its loaders cost 50–100 ms of every start, and a no-op
 * rerun is mostly start. Same precedence as cosmiconfig's search within one
 * directory: the first existing search place wins, and for anything but a
 * TypeScript file (or when nothing is found here) cosmiconfig takes over.
 */
function typescriptConfig(cwd: string, configFile: string | undefined): string | undefined {
  const isTypeScript = (file: string) => /\.m?ts$/.test(file)
  if (configFile !== undefined) {
    const file = path.resolve(cwd, configFile)
    return isTypeScript(file) && existsSync(file) ? file : undefined
  }
  for (const name of CONFIG_SEARCH_PLACES) {
    const file = path.join(cwd, name)
    if (existsSync(file)) return isTypeScript(name) ? file : undefined
  }
  return undefined
}

export interface LoadedConfig {
  readonly config: ResolvedConfig
  readonly filepath: string
}

/** Finds (or takes) the config file, evaluates it, and resolves it. CONFIG_NOT_FOUND / CONFIG_INVALID on failure. */
export async function loadConfig(options: { cwd?: string; configFile?: string; builtinPlugins?: readonly Plugin[] } = {}): Promise<LoadedConfig> {
  const cwd = options.cwd ?? process.cwd()
  let result: { config: unknown; filepath: string; isEmpty?: boolean } | null
  try {
    const direct = typescriptConfig(cwd, options.configFile)
    if (direct !== undefined) {
      // As cosmiconfig: a blank file is no config, and is not evaluated.
      const content = readFileSync(direct, 'utf8')
      const config = content.trim() === '' ? undefined : await loadWithJiti(direct, content)
      result = { config, filepath: direct, isEmpty: config === undefined }
    } else {
      const { cosmiconfig } = await import('cosmiconfig')
      const explorer = cosmiconfig('filedge', {
        searchPlaces: CONFIG_SEARCH_PLACES,
        searchStrategy: 'project',
        cache: false,
        loaders: { '.ts': loadWithJiti, '.mts': loadWithJiti },
      })
      result = options.configFile ? await explorer.load(path.resolve(cwd, options.configFile)) : await explorer.search(cwd)
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && options.configFile) {
      throw new FiledgeError('CONFIG_NOT_FOUND', `config file not found: ${options.configFile}`)
    }
    const where = options.configFile ?? 'the config file'
    throw configInvalid(`could not load ${where}: ${(error as Error).message}`, error)
  }
  if (result === null || result.isEmpty) {
    throw new FiledgeError(
      'CONFIG_NOT_FOUND',
      `no filedge config found in ${cwd} (looked for ${CONFIG_SEARCH_PLACES.slice(0, 5).join(', ')}, .filedgerc*, package.json#filedge); run \`filedge init\` to create one`,
    )
  }
  let raw = result.config as UserConfig | (() => UserConfig | Promise<UserConfig>)
  if (typeof raw === 'function') raw = await raw()
  if (typeof raw === 'object' && raw !== null && Array.isArray(raw.presets)) {
    // Package names resolve from the project, like any import in the config file.
    const from = result.filepath
    raw = { ...raw, presets: await loadPresets(raw.presets, (spec) => importFresh(spec, from)) }
  }
  return {
    config: resolveConfig(await instantiatePlugins(raw), { configFile: result.filepath, builtinPlugins: options.builtinPlugins }),
    filepath: result.filepath,
  }
}
