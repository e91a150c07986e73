#!/usr/bin/env node
// The CLI is compiled and bundled into dist/bundle/ by `npm install` (the `prepare` script; build/bundle.mjs says why bundled).
let cli
try {
  cli = await import('../dist/bundle/core/cli/main.js')
} catch (error) {
  if (error && error.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/bundle/core/cli/main.js')) {
    console.error('[filedge] not built yet: run `npm install` (or `npm run build`) in the filedge package first')
    process.exit(2)
  }
  throw error
}
// A reader that goes away early (`filedge --json | head -1`) must not kill a load halfway through: the
// output is lost, the loading goes on to a consistent end.
const readerGone = (error) => {
  if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_DESTROYED') throw error
}
process.stdout.on('error', readerGone)
process.stderr.on('error', readerGone)
const code = await cli.main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  // A terminal that reports no width (some container and CI pseudo-terminals) would get the live view
  // wrapped at zero columns, one character per line: it gets plain lines instead.
  isTTY: Boolean(process.stdout.isTTY) && process.stdout.columns > 0,
  cwd: process.cwd(),
})
// Writes to a pipe are asynchronous: exiting at once would drop whatever the reader has not taken yet
// (the tail of --json output, run:summary included). Wait until both streams have flushed.
const flushed = (stream) => new Promise((resolve) => stream.write('', () => resolve()))
await Promise.all([flushed(process.stdout), flushed(process.stderr)])
process.exit(code)
