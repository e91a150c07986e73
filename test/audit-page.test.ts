import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { syntheticSqliteLedger } from '../bench/ledger-data.js'
import { scriptSafe } from '../core/audit/page/html.js'
import { exited, REPO_ROOT, sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

/**
 * The audit page in a real browser: Debian's Chromium, driven by
 * playwright-core (no browser download). CI installs Chromium when it is
 * missing (.ci/run) and sets FILEDGE_TEST_BROWSER_REQUIRED=1, so there a
 * missing browser fails the suite; elsewhere it is skipped, loudly.
 *
 * The screenshot of the page under test is kept in test/artifacts/ (ignored
 * by git) for a person to look at: test/artifacts/audit-page.png.
 */

const CHROMIUM = process.env.FILEDGE_TEST_CHROMIUM ?? '/usr/bin/chromium'
const REQUIRED = process.env.FILEDGE_TEST_BROWSER_REQUIRED === '1' || process.env.CI !== undefined
const ARTIFACTS = path.join(REPO_ROOT, 'test', 'artifacts')

function describeBrowser(name: string, body: () => void): void {
  if (existsSync(CHROMIUM)) {
    describe(name, body)
    return
  }
  const reason = `no Chromium at ${CHROMIUM} (install Debian's: apt-get install -y chromium; or set FILEDGE_TEST_CHROMIUM)`
  if (REQUIRED) {
    describe(name, () => {
      it('finds Chromium (CI, or FILEDGE_TEST_BROWSER_REQUIRED=1)', () => {
        throw new Error(reason)
      })
    })
    return
  }
  console.warn(`\n${'!'.repeat(78)}\n!! SKIPPING "${name}": ${reason}.\n!! Set FILEDGE_TEST_BROWSER_REQUIRED=1 to make this a failure.\n${'!'.repeat(78)}\n`)
  describe.skip(name, body)
}

/** A path no page may let out of its data: it closes the script element and opens a comment, and runs code if it escapes. */
const HOSTILE = 'incoming/<!--x--></script><script>window.__pwned=1</script>.csv'

interface Opened {
  readonly page: Page
  /** Console errors and uncaught exceptions. */
  readonly errors: string[]
}

describeBrowser('the audit page in Chromium', () => {
  let browser: Browser
  let ws: Workspace | undefined
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
  })
  afterAll(async () => {
    await browser?.close()
  })
  afterEach(() => {
    ws?.remove()
    ws = undefined
  })

  const open = async (url: string): Promise<Opened> => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } })
    const errors: string[] = []
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text())
    })
    page.on('pageerror', (error) => errors.push(String(error)))
    // The page may fetch nothing: any request but the page itself is an error.
    page.on('request', (request) => {
      if (request.url() !== url) errors.push(`fetched ${request.url()}`)
    })
    await page.goto(url)
    await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 })
    return { page, errors }
  }

  const search = async (page: Page, text: string) => {
    await page.fill('#file-search', text)
    return page.locator('#file-rows tr[data-index]')
  }

  it('shows a real run: the failing file and its reason on the first screen and in the list, which filters and sorts; a hostile path stays text', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: "{ id: { type: 'string', required: true }, n: 'integer' }" }),
      'incoming/a.csv': 'id,n\na1,1\na2,2\n',
      'incoming/b.csv': 'id,n\nb1,3\n',
      'incoming/bad.csv': 'id,n\nx,not-a-number\n',
      [HOSTILE]: 'id,n\ny,also-bad\n',
    })
    expect((await ws.cli(['--reporter', 'silent'])).code).toBe(1)
    const exported = await ws.cli(['audit', 'export', '--out', 'report'])
    expect(exported.code, exported.stderr).toBe(0)
    const file = ws.file('report/index.html')
    const html = readFileSync(file, 'utf8')
    // The hostile path is in the page only escaped: as JSON's \u003c, or as HTML text.
    expect(html).not.toContain('<script>window.__pwned')

    const { page, errors } = await open(`file://${file}`)
    try {
      expect(await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned)).toBeUndefined()
      const status = page.locator('#status')
      await expect(status.locator('tr.alert-failing').count()).resolves.toBe(1)
      const first = await status.innerText()
      expect(first).toMatch(/Failing\s+orders\s+2 files/i)
      expect(first).toContain('cannot coerce')

      let rows = await search(page, 'bad.csv')
      expect(await rows.count()).toBe(1)
      expect(await rows.first().locator('td.state').innerText()).toBe('FAILED')
      expect(await rows.first().locator('td.error').innerText()).toContain('column n: cannot coerce "not-a-number" to integer')

      rows = await search(page, '__pwned')
      expect(await rows.count()).toBe(1)
      expect(await rows.first().locator('td.path').innerText()).toBe(HOSTILE)
      await rows.first().click()
      const details = await page.locator('#file-rows tr.details').innerText()
      expect(details).toMatch(/filedge history [0-9a-f]{64}/)
      expect(details).toContain(HOSTILE)

      await search(page, '')
      await page.selectOption('#file-state', 'FAILED')
      expect(await page.locator('#file-rows tr[data-index]').count()).toBe(2)
      await page.selectOption('#file-state', '')
      expect(await page.locator('#file-rows tr[data-index]').count()).toBe(4)
      await page.click('#file-head th[data-key="rows"]')
      expect(await page.getAttribute('#file-head th[data-key="rows"]', 'aria-sort')).toBe('ascending')
      expect(await page.locator('#file-rows tr[data-index] td:nth-child(6)').allInnerTexts()).toEqual(['1', '2', '', ''])
      // The first screen's link narrows the list to what it counts.
      await page.click('#status tr.alert-failing a')
      await expect(page.locator('#file-rows tr[data-index]').count()).resolves.toBe(2)

      mkdirSync(ARTIFACTS, { recursive: true })
      await page.screenshot({ path: path.join(ARTIFACTS, 'audit-page.png'), fullPage: true })
      expect(errors).toEqual([])
    } finally {
      await page.close()
    }
  })

  it('serves the page live on 127.0.0.1, read-only, until stopped', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" }),
      'incoming/a.csv': 'id\na1\n',
    })
    expect((await ws.cli(['--reporter', 'silent'])).code).toBe(0)
    const server = ws.spawn(['audit', 'serve', '--port', '0'])
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = ''
        server.stdout!.on('data', (chunk: Buffer) => {
          out += chunk.toString()
          const found = /http:\/\/127\.0\.0\.1:\d+\//.exec(out)
          if (found) resolve(found[0])
        })
        server.once('exit', (code) => reject(new Error(`serve exited ${code}: ${out}`)))
      })
      expect((await fetch(url, { method: 'POST' })).status).toBe(405)
      expect((await fetch(new URL('/other', url))).status).toBe(404)
      const { page, errors } = await open(url)
      try {
        expect(await page.locator('#status').innerText()).toContain('All clear.')
        // Built per request: a file loaded since shows on the next one.
        ws.write('incoming/b.csv', 'id\nb1\n')
        expect((await ws.cli(['--reporter', 'silent'])).code).toBe(0)
        await page.reload()
        await page.waitForSelector('body[data-ready="true"]')
        expect(await page.locator('#file-rows tr[data-index]').count()).toBe(2)
        expect(errors).toEqual([])
      } finally {
        await page.close()
      }
      server.kill('SIGTERM')
      expect(await exited(server)).toEqual({ code: 0, signal: null })
    } finally {
      if (server.exitCode === null) server.kill('SIGKILL')
    }
  })

  it('stays responsive with 100,000 files listed', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" }), 'incoming/.gitkeep': '' })
    mkdirSync(ws.file('.filedge'), { recursive: true })
    syntheticSqliteLedger(ws.file('.filedge/ledger.db'), { files: 100_000 })
    const exported = await ws.cli(['audit', 'export', '--out', 'report'])
    expect(exported.code, exported.stderr).toBe(0)
    const { page, errors } = await open(`file://${ws.file('report/index.html')}`)
    try {
      expect(await page.locator('#file-count').innerText()).toMatch(/^1–50 of 100,000 matching$/)
      // Not a benchmark of filedge: a check, measured inside the browser, that typing into the search box or sorting
      // 100,000 files answers within what a person perceives as immediate, with room to spare on a loaded CI machine
      // (locally: tens of milliseconds).
      const timed = (action: string) =>
        page.evaluate(async (what) => {
          // The browser's globals (the tests are typed for Node).
          const browser = globalThis as unknown as { document: any; requestAnimationFrame(callback: () => void): void }
          const started = performance.now()
          if (what === 'search') {
            const input = browser.document.getElementById('file-search')
            input.value = 'part-0000ff'
            input.dispatchEvent(new Event('input'))
          } else browser.document.querySelector('#file-head th[data-key="path"]').click()
          // Until the next frame: the list is rendered by then.
          await new Promise((resolve) => browser.requestAnimationFrame(() => resolve(undefined)))
          return performance.now() - started
        }, action)
      const searching = await timed('search')
      expect(await page.locator('#file-count').innerText()).toMatch(/ of \d+ matching/)
      expect(searching).toBeLessThan(500)
      await page.fill('#file-search', '')
      const sorting = await timed('sort')
      expect(sorting).toBeLessThan(1000)
      expect(await page.locator('#file-rows tr[data-index]').count()).toBe(50)
      expect(errors).toEqual([])
    } finally {
      await page.close()
    }
  })
})

describe('the audit page data, as embedded', () => {
  it('escapes what could end the script element in the listing DuckDB wrote, and leaves the rest as it was', () => {
    const listing = JSON.stringify({ path: ['incoming/</script><!--.csv', 'a\u2028b\u2029c.csv', 'plain.csv'] })
    const escaped = Buffer.from(scriptSafe(Buffer.from(listing)))
    expect(escaped.includes('<')).toBe(false)
    expect(escaped.includes(Buffer.from('\u2028'))).toBe(false)
    expect(escaped.includes(Buffer.from('\u2029'))).toBe(false)
    expect(JSON.parse(escaped.toString('utf8'))).toEqual(JSON.parse(listing))
    const clean = Buffer.from(JSON.stringify({ path: ['incoming/ü — 2026.csv'] }))
    expect(scriptSafe(clean)).toBe(clean)
  })

  it('lists no file, in columns the page reads, when no run has made a ledger yet', async () => {
    const ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" }), 'incoming/.keep': '' })
    try {
      const exported = await ws.cli(['audit', 'export', '--out', 'report'])
      expect(exported.code, exported.stderr).toBe(0)
      const html = readFileSync(path.join(ws.dir, 'report', 'index.html'), 'utf8')
      const data = JSON.parse(/<script type="application\/json" id="filedge-data">([^<]*)<\/script>/.exec(html)![1]) as { files: Record<string, unknown[]>; filesTotal: number }
      expect(data.filesTotal).toBe(0)
      expect(Object.keys(data.files).sort()).toEqual(['attempts', 'committedAt', 'createdAt', 'error', 'hash', 'leaseExpiresAt', 'path', 'pipeline', 'rows', 'size', 'state', 'updatedAt'])
      expect(Object.values(data.files).every((column) => Array.isArray(column) && column.length === 0)).toBe(true)
      expect(html).toContain('Nothing recorded yet.')
    } finally {
      ws.remove()
    }
  })
})
