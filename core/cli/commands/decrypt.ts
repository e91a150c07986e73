import { createInterface } from 'node:readline'
import type { Command } from 'commander'
import { configKeys, keysFromEnv } from '../../config/row-controls.js'
import { FiledgeError } from '../../errors.js'
import { configFor, type ConfigOption } from '../context.js'
import { printJson, type CliIo } from '../io.js'

interface DecryptFlags extends ConfigOption {
  readonly keyEnv?: string[]
  readonly json?: boolean
}

/**
 * `filedge decrypt`: the text of values an `encrypt` column stored, for
 * authorised reads. The key comes from the environment only (never an
 * argument, which `ps` shows to everyone on the machine): `--key-env` names
 * the variables, else every encrypt and quarantine key of the config whose
 * variable is set; each value's key id picks its key, so values sealed
 * under a rotated key open with the old key given beside the new.
 */
export function registerDecrypt(program: Command, io: CliIo, stdin: NodeJS.ReadableStream = process.stdin): void {
  program
    .command('decrypt')
    .argument('[values...]', 'encrypted values (fe1:<key id>:…); none: one per line on standard input')
    .description('print the text of values an encrypt column stored (authorised reads); a wrong key fails loudly')
    .option('-c, --config <path>', 'config file (its encrypt keys are used)')
    .option('--key-env <name...>', 'environment variables holding the keys (instead of the config’s)')
    .option('--json', 'machine-readable output: [{ value, text }]')
    .addHelpText(
      'after',
      "\nAn empty line (a NULL exported as empty) prints an empty line.\n\nExamples:\n  $ filedge decrypt 'fe1:d8bedb87:OvLy…'\n  $ sqlite3 warehouse.db 'SELECT ssn FROM orders' | filedge decrypt --key-env PII_KEY",
    )
    .action(async (values: string[], flags: DecryptFlags) => {
      const keys = flags.keyEnv !== undefined ? keysFromEnv(flags.keyEnv) : configKeys((await configFor(flags, io)).pipelines)
      if (keys.length === 0) throw new FiledgeError('KEY_INVALID', 'no key: the config names no encrypt key whose environment variable is set; set it, or give --key-env NAME')
      const { openFrame } = await import('../../protect/frame.js')
      const open = (value: string) => (value.trim() === '' ? '' : openFrame(value.trim(), keys))
      const input: AsyncIterable<string> = values.length > 0 ? (async function* () { yield* values })() : createInterface({ input: stdin, crlfDelay: Infinity })
      const out: { value: string; text: string }[] = []
      for await (const value of input) {
        const text = open(value)
        if (flags.json) out.push({ value, text })
        // Raw: the text is the authorised output itself (not redacted or escaped), one value a line.
        else io.stdout.write(`${text}\n`)
      }
      if (flags.json) printJson(io.stdout, out)
    })
}
