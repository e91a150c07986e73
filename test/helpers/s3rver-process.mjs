/**
 * s3rver in a process of its own, driven by `s3-server.ts` over IPC. Its
 * ListObjectsV2 continuation tokens are DES-encrypted, and OpenSSL 3 has DES
 * only in its legacy provider, which a process enables at start
 * (`--openssl-legacy-provider`): the test process itself stays as it is.
 * The HTTP server is ours rather than s3rver's `run()`, so `stop` can drop
 * connections in the middle of a body.
 *
 * argv: <data directory>. Messages in: 'stop', 'start', 'requests'. Out:
 * { port } once listening, 'stopped' once stopped, { requests } (every
 * request since the last 'requests', as "METHOD /url") for 'requests'.
 */
import { createServer } from 'node:http'
import S3rver from 's3rver'

const handler = new S3rver({ directory: process.argv[2], silent: true }).callback()
let server
let port = 0
// What was asked of the store, so a test can tell a listing from a download.
let requests = []

function start() {
  const created = createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`)
    handler(request, response)
  })
  created.listen(port, '127.0.0.1', () => {
    server = created
    port = created.address().port
    process.send({ port })
  })
}

function stop() {
  const running = server
  server = undefined
  if (running === undefined) return process.send('stopped')
  running.close(() => process.send('stopped'))
  running.closeAllConnections()
}

function report() {
  process.send({ requests })
  requests = []
}

process.on('message', (message) => (message === 'stop' ? stop() : message === 'requests' ? report() : start()))
// The test process went away (even killed): so does the server.
process.on('disconnect', () => process.exit(0))
start()
