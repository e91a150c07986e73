import { mkdirSync, renameSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import path from 'node:path'
import type { Command } from 'commander'
import type { ResolvedConfig } from '../../config/types.js'
import { createMutex } from '../../concurrency.js'
import { describeError, usageError } from '../../errors.js'
import { redact } from '../../secrets.js'
import { configFor, withLedger, type ConfigOption } from '../context.js'
import { print, type CliIo } from '../io.js'
import { untilStopped } from '../signals.js'

/** Files the page lists by default; the counts and charts are over every file whatever it says. */
const DEFAULT_FILES = 100_000
const DEFAULT_PORT = 4173

interface PageFlags extends ConfigOption {
  readonly files: string
}

function filesOption(flags: PageFlags): number {
  if (flags.files === 'all') return Number.MAX_SAFE_INTEGER
  const files = Number(flags.files)
  if (!Number.isSafeInteger(files) || files < 0) throw usageError(`audit: --files expects a number of files or "all"; got ${JSON.stringify(flags.files)}`)
  return files
}

async function buildPage(config: ResolvedConfig, files: number): Promise<Buffer> {
  const [{ pageData }, { renderPage }] = await Promise.all([import('../../audit/page/data.js'), import('../../audit/page/html.js')])
  return withLedger(config, async (ledger) => renderPage(await pageData(ledger, config, { files })))
}

/** What every answer of `audit serve` carries: nothing cached, nothing sniffed, nothing fetched by the page. */
const HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:",
}

/**
 * `filedge audit export|serve`: the audit page (core/audit/page), written to
 * a file or served live. The page is self-contained: inline CSS, script and
 * data, nothing fetched.
 */
export function registerAudit(program: Command, io: CliIo): void {
  const command = program.command('audit').description('the audit page: what is failing, stuck, backlogged or late, every file, lineage, charts')
  const shared = (sub: Command) =>
    sub
      .option('-c, --config <path>', 'config file')
      .option('--files <n>', `files the page lists (failing, stuck and pending first, then the latest), or "all"`, String(DEFAULT_FILES))

  shared(command.command('export'))
    .description('write the audit page as one self-contained HTML file (opens offline)')
    .option('--out <dir>', 'directory to write index.html into (default: .filedge/audit under the project root)')
    .addHelpText('after', '\nExamples:\n  $ filedge audit export\n  $ filedge audit export --out /srv/reports/filedge --files all')
    .action(async (flags: PageFlags & { out?: string }) => {
      const files = filesOption(flags)
      const config = await configFor(flags, io)
      const html = await buildPage(config, files)
      const dir = flags.out === undefined ? path.join(config.root, '.filedge', 'audit') : path.resolve(io.cwd, flags.out)
      mkdirSync(dir, { recursive: true })
      const target = path.join(dir, 'index.html')
      // Written aside and renamed: a reader (a web server, a browser reloading) never sees half a page.
      const temp = `${target}.${process.pid}.tmp`
      writeFileSync(temp, html)
      renameSync(temp, target)
      print(io.stdout, `audit page written to ${path.relative(io.cwd, target) || target}`)
    })

  shared(command.command('serve'))
    .description('serve the audit page on 127.0.0.1, built afresh on every request (read-only); Ctrl-C stops it')
    .option('--port <n>', 'port on 127.0.0.1 (0: any free port)', String(DEFAULT_PORT))
    .addHelpText('after', '\nExamples:\n  $ filedge audit serve\n  $ filedge audit serve --port 8080')
    .action(async (flags: PageFlags & { port: string }) => {
      const files = filesOption(flags)
      const port = Number(flags.port)
      if (!Number.isInteger(port) || port < 0 || port > 65_535) throw usageError(`audit serve: --port expects a port number; got ${JSON.stringify(flags.port)}`)
      const config = await configFor(flags, io)
      // One page at a time: each holds the ledger in memory while it is built.
      const building = createMutex()
      const answer = async (request: IncomingMessage, response: ServerResponse) => {
        if (request.method !== 'GET' && request.method !== 'HEAD') {
          response.writeHead(405, { ...HEADERS, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('read-only: GET only\n')
          return
        }
        const { pathname } = new URL(request.url ?? '/', 'http://127.0.0.1')
        if (pathname !== '/' && pathname !== '/index.html') {
          response.writeHead(404, { ...HEADERS, 'content-type': 'text/plain; charset=utf-8' }).end('not found: the audit page is at /\n')
          return
        }
        try {
          const html = await building.run(() => buildPage(config, files))
          response.writeHead(200, { ...HEADERS, 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html) })
          response.end(request.method === 'HEAD' ? undefined : html)
        } catch (error) {
          const message = redact(describeError(error))
          print(io.stderr, `[filedge] audit page failed: ${message}`)
          response.writeHead(500, { ...HEADERS, 'content-type': 'text/plain; charset=utf-8' }).end(`the audit page could not be built: ${message}\n`)
        }
      }
      const server = createServer((request, response) => void answer(request, response))
      await new Promise<void>((resolve, reject) => {
        server.once('error', (error: NodeJS.ErrnoException) =>
          reject(error.code === 'EADDRINUSE' ? usageError(`audit serve: port ${port} on 127.0.0.1 is in use; pick another with --port`) : error),
        )
        server.listen(port, '127.0.0.1', () => resolve())
      })
      const address = server.address()
      const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : port}/`
      print(io.stdout, `audit page at ${url} (built afresh on every request; Ctrl-C stops)`)
      await untilStopped(
        (signal) =>
          new Promise<void>((resolve) => {
            signal.addEventListener('abort', () => {
              server.close(() => resolve())
              server.closeAllConnections()
            })
          }),
      )
    })
}
