import type { Plugin } from '../plugin.js'
import { jsonReporter, silentReporter, simpleReporter, type ReporterStreams } from './lines.js'
import { liveReporter } from './live.js'

import type { ReporterName } from './names.js'

export { REPORTERS, type ReporterName } from './names.js'

/** `default` is the live view on a terminal and plain lines anywhere else (CI logs, pipes). */
export function createReporter(name: ReporterName, streams: ReporterStreams & { readonly isTTY: boolean }): Plugin {
  switch (name) {
    case 'default':
      return streams.isTTY ? liveReporter(streams) : simpleReporter(streams)
    case 'simple':
      return simpleReporter(streams)
    case 'json':
      return jsonReporter(streams)
    case 'silent':
      return silentReporter()
  }
}
