// A process racing others for one pond's lease (the built ledger), for test/pond-ledger.test.ts.
//
//   node pond-lease-racer.mjs sqlite <file> <worker>
//   node pond-lease-racer.mjs postgres <url> <schema> <worker>
//
// Prints `ready` once the ledger is open, then answers commands read from stdin, one a line,
// with one JSON line each:
//   take <round> <at>   spins until Date.now() reaches <at> (the parent gives every racer the
//                       same instant), takes the lease of `race@1` for a minute:
//                       {"round":…,"token":"…"|null}
//   release <round>     releases the token this process holds: {"round":…,"released":true}
// and closes the ledger and exits at the end of stdin.
import { createInterface } from 'node:readline'

const [kind, ...args] = process.argv.slice(2)
const POND = 'race@1'

async function open() {
  if (kind === 'sqlite') {
    const { openSqliteLedger } = await import('../../dist/core/ledger/sqlite/store.js')
    return { ledger: openSqliteLedger(args[0]), worker: args[1] }
  }
  const { openPostgresLedger } = await import('../../dist/core/ledger/postgres/store.js')
  return { ledger: await openPostgresLedger(args[0], { schema: args[1] }), worker: args[2] }
}

const { ledger, worker } = await open()
const say = (line) => process.stdout.write(`${typeof line === 'string' ? line : JSON.stringify(line)}\n`)
let held
say('ready')
for await (const line of createInterface({ input: process.stdin })) {
  const [command, round, at] = line.split(' ')
  if (command === 'take') {
    // A busy wait, not a timer: timers fire a millisecond or more late, and the racers must start together.
    while (Date.now() < Number(at));
    held = await ledger.takePondLease(POND, worker, 60_000)
    say({ round: Number(round), token: held ?? null })
  } else if (command === 'release') {
    await ledger.releasePondLease(POND, held)
    held = undefined
    say({ round: Number(round), released: true })
  }
}
await ledger.close()
