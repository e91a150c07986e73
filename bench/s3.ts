import { fork, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { smallFiles } from './data.js'
import { alternate, median } from './measure.js'
import { REPO_ROOT, project } from './project.js'
import { bigCsv, format, perSecond, seconds, type BenchOptions, type Row } from './suites.js'

/** s3rver (an S3 API on loopback) in a process of its own, as the tests run it (test/helpers/s3rver-process.mjs says why). */
async function startS3(): Promise<{ endpoint: string; client: S3Client; stop(): Promise<void> }> {
  const directory = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-s3-'))
  const child: ChildProcess = fork(path.join(REPO_ROOT, 'test/helpers/s3rver-process.mjs'), [directory], {
    execArgv: ['--openssl-legacy-provider'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const { port } = await new Promise<{ port: number }>((resolve, reject) => {
    child.once('message', (message) => resolve(message as { port: number }))
    child.once('exit', (code) => reject(new Error(`s3rver exited (${code})`)))
  })
  const endpoint = `http://127.0.0.1:${port}`
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } })
  return {
    endpoint,
    client,
    async stop() {
      client.destroy()
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.disconnect()
      await exited
      rmSync(directory, { recursive: true, force: true })
    },
  }
}

async function upload(client: S3Client, bucket: string, objects: readonly { key: string; file: string }[], concurrency = 32): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < objects.length) {
        const { key, file } = objects[next++]
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: readFileSync(file) }))
      }
    }),
  )
}

/**
 * S3 as a source, against s3rver on loopback: a no-op rerun over
 * `--s3-files` committed objects (a paginated listing and nothing else: the
 * stat cache knows every ETag, so no object is read), and the `--rows` CSV
 * loaded from a bucket against the same file from local disk (downloaded
 * once while it is hashed, spooled, loaded from the spool).
 */
export async function s3Source(options: BenchOptions): Promise<Row[]> {
  const server = await startS3()
  const env = { ...process.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' }
  const s3 = (prefix: string) => `s3({ bucket: 'bench', prefix: ${JSON.stringify(prefix)}, endpoint: ${JSON.stringify(server.endpoint)}, forcePathStyle: true })`
  const common = { include: '*.csv', imports: "import { sqlite } from 'filedge/plugins/sqlite'\nimport { s3 } from 'filedge/plugins/s3'", destination: "sqlite({ path: 'warehouse.db' })", state: ['warehouse.db', 'warehouse.db-wal', 'warehouse.db-shm'], env }
  const rows: Row[] = []
  try {
    await server.client.send(new CreateBucketCommand({ Bucket: 'bench' }))
    const small = await smallFiles(path.join(options.dataDir, `small-${options.s3Files}x${options.rowsPerFile}`), options.s3Files, options.rowsPerFile)
    const names = readdirSync(small.dir).filter((name) => name.endsWith('.csv'))
    await upload(server.client, 'bench', names.map((name) => ({ key: `small/${name}`, file: path.join(small.dir, name) })))
    const listing = project({ ...common, sourceDir: '.', source: s3('small/') })
    try {
      const load = await listing.run()
      if (load.summary.committed !== small.files) throw new Error(`expected ${small.files} objects committed, got ${load.summary.committed}`)
      // What the store itself takes to list them, with the same SDK and page size: the floor under any rerun.
      const listOnly = async () => {
        const started = performance.now()
        let token: string | undefined
        let count = 0
        do {
          const page = await server.client.send(new ListObjectsV2Command({ Bucket: 'bench', Prefix: 'small/', ContinuationToken: token }))
          count += page.Contents?.length ?? 0
          token = page.NextContinuationToken
        } while (token !== undefined)
        if (count !== small.files) throw new Error(`listed ${count} objects, expected ${small.files}`)
        return performance.now() - started
      }
      const runs = await alternate(options.reps, {
        a: async () => {
          const rerun = await listing.run()
          if (rerun.summary.committed !== 0 || rerun.summary.skipped !== small.files) throw new Error('the rerun read objects again')
          return rerun.ms
        },
        b: listOnly,
      })
      rows.push({
        work: `no-op rerun over ${format.format(small.files)} committed S3 objects`,
        filedge: `${seconds(median(runs.a))} (first load ${format.format(perSecond(small.files, load.ms))} objects/s)`,
        native: `${seconds(median(runs.b))} the listing alone (ListObjectsV2, 1,000 keys a page)`,
        ratio: median(runs.a) / median(runs.b),
        target: '≤ 2 s',
        met: median(runs.a) <= 2000,
        detail: { wallMs: runs.a.map(Math.round), listingMs: runs.b.map(Math.round), firstLoadMs: Math.round(load.ms) },
      })
    } finally {
      listing.remove()
    }

    const data = await bigCsv(options)
    await upload(server.client, 'bench', [{ key: `big/${path.basename(data.file)}`, file: data.file }], 1)
    const remote = project({ ...common, sourceDir: '.', source: s3('big/') })
    const local = project({ ...common, sourceDir: path.dirname(data.file), include: path.basename(data.file) })
    try {
      const runs = await alternate(options.reps, {
        a: async () => {
          remote.reset()
          const result = await remote.run()
          if (result.summary.rows !== data.rows) throw new Error(`S3: expected ${data.rows} rows, got ${result.summary.rows}`)
          return result.ms
        },
        b: async () => {
          local.reset()
          const result = await local.run()
          if (result.summary.rows !== data.rows) throw new Error(`local: expected ${data.rows} rows, got ${result.summary.rows}`)
          return result.ms
        },
      })
      const ratio = median(runs.a) / median(runs.b)
      rows.push({
        work: `${format.format(data.rows)} rows from S3 → SQLite`,
        filedge: `${seconds(median(runs.a))} (${format.format(perSecond(data.rows, median(runs.a)))} rows/s)`,
        native: `${seconds(median(runs.b))} the same file from local disk`,
        ratio,
        target: '≤ 1.2× local',
        met: ratio <= 1.2,
        detail: { s3Ms: runs.a.map(Math.round), localMs: runs.b.map(Math.round) },
      })
    } finally {
      remote.remove()
      local.remove()
    }
  } finally {
    await server.stop()
  }
  return rows
}
