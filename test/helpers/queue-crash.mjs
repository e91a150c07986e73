// A test plugin that SIGKILLs its own process when the queue source has
// promoted its nth batch and is about to acknowledge it: the window where a
// stop leaves messages in a promoted file that the broker will deliver again.
//
// FILEDGE_QUEUE_CRASH=<nth>   (unset: the plugin does nothing)
//
// The queue source says `batch N promoted …; acknowledging …` (debug) after
// the manifest is in place and before any ack is sent; the log hook is
// synchronous, so the kill lands exactly there. Before dying the plugin
// writes `crash-armed`, so the test knows the point was reached.
import { writeFileSync } from 'node:fs'

export function queueCrash() {
  const nth = Number(process.env.FILEDGE_QUEUE_CRASH ?? 0)
  return {
    name: 'queue-crash',
    enforce: 'pre',
    apply({ hooks }) {
      if (!(nth > 0)) return
      let seen = 0
      hooks.log.tap('queue-crash', (entry) => {
        if (entry.level === 'debug' && /: batch \d+ promoted \(/.test(entry.message) && ++seen === nth) {
          writeFileSync('crash-armed', entry.message)
          process.kill(process.pid, 'SIGKILL')
        }
      })
    },
  }
}
