import { Command, CommanderError } from 'commander'
import { isFiledgeError } from '../errors.js'
import { redact } from '../secrets.js'
import { registerAudit } from './commands/audit.js'
import { registerCache } from './commands/cache.js'
import { registerPond } from './commands/pond.js'
import { registerQuery } from './commands/query.js'
import { registerConfig } from './commands/config.js'
import { registerFetch } from './commands/fetch.js'
import { registerStages } from './commands/stages.js'
import { registerHealthcheck } from './commands/healthcheck.js'
import { registerHistory } from './commands/history.js'
import { registerLineage } from './commands/lineage.js'
import { registerRequeue } from './commands/requeue.js'
import { registerRun } from './commands/run.js'
import { registerStatus } from './commands/status.js'
import { registerInit } from './commands/init.js'
import { registerInspect } from './commands/inspect.js'
import { registerValidate } from './commands/validate.js'
import { registerQuarantine } from './commands/quarantine.js'
import { registerDecrypt } from './commands/decrypt.js'
import { print, type CliIo } from './io.js'

const USAGE_CODES = new Set(['CONFIG_INVALID', 'CONFIG_NOT_FOUND', 'USAGE', 'KEY_INVALID'])

/**
 * Runs the CLI and returns the exit code: 0 all good, 1 a file failed (or
 * the destination drifted), 2 usage or config error.
 */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  let code = 0
  const program = new Command('filedge')
    .description('Audit-grade file ingestion: every file loaded once, atomically, with its provenance.')
    .version(process.env.npm_package_version ?? '0.1.0')
    .exitOverride()
    .configureOutput({ writeOut: (text) => io.stdout.write(text), writeErr: (text) => io.stderr.write(text) })
    .showHelpAfterError('(run filedge --help for usage)')
  registerRun(program, io, (exit) => {
    code = exit
  })
  registerStatus(program, io)
  registerHistory(program, io)
  registerLineage(program, io)
  registerQuery(program, io)
  registerAudit(program, io)
  registerHealthcheck(program, io, (exit) => {
    code = exit
  })
  registerRequeue(program, io)
  registerValidate(program, io, (exit) => {
    code = exit
  })
  registerQuarantine(program, io)
  registerDecrypt(program, io)
  registerInspect(program, io)
  registerInit(program, io)
  registerConfig(program, io)
  registerCache(program, io)
  registerStages(program, io, (exit) => {
    code = exit
  })
  registerPond(program, io, (exit) => {
    code = exit
  })
  registerFetch(program, io, (exit) => {
    code = exit
  })
  try {
    await program.parseAsync([...argv], { from: 'user' })
    return code
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 || error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : 2
    }
    if (isFiledgeError(error)) {
      print(io.stderr, `[filedge] ${error.message}`)
      return USAGE_CODES.has(error.code) ? 2 : 1
    }
    print(io.stderr, `[filedge] internal error: ${redact(error instanceof Error ? (error.stack ?? error.message) : String(error))}`)
    return 1
  }
}
