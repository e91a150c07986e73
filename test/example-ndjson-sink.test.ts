import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { testDestination } from 'filedge/testing'
import { ndjsonSink } from '../examples/plugins/ndjson-sink.js'

// The example destination passes the same kit as the built-in ones, imported
// the way a third party would (`filedge/testing`).
testDestination({
  name: 'examples/plugins/ndjson-sink',
  make: (dir) => ({
    destination: ndjsonSink({ dir }),
    async rows(table) {
      const folder = path.join(dir, encodeURIComponent(table))
      const files = (await readdir(folder)).filter((name) => name.endsWith('.ndjson'))
      const texts = await Promise.all(files.map((name) => readFile(path.join(folder, name), 'utf8')))
      return texts.flatMap((text) => text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>))
    },
  }),
})
