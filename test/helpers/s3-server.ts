import { fork, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'

/** s3rver's one account. It checks the access key id but not the signature, so a wrong secret alone is accepted. */
export const S3RVER_KEY = 'S3RVER'
export const S3RVER_SECRET = 'S3RVER'

/**
 * What the AWS SDK's chain finds, in a test process and in the CLIs it spawns: s3rver's key, and
 * nothing else on the machine that could lend credentials (no profile files, no instance metadata,
 * which would also take seconds to time out).
 */
export const S3RVER_CREDENTIALS: Readonly<Record<string, string | undefined>> = {
  AWS_ACCESS_KEY_ID: S3RVER_KEY,
  AWS_SECRET_ACCESS_KEY: S3RVER_SECRET,
  AWS_SESSION_TOKEN: undefined,
  AWS_PROFILE: undefined,
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/filedge-test-credentials',
  AWS_CONFIG_FILE: '/nonexistent/filedge-test-config',
  AWS_EC2_METADATA_DISABLED: 'true',
}

/** Sets (or, for undefined, deletes) environment variables of this process; returns the values they had, to restore. */
export function setEnv(values: Readonly<Record<string, string | undefined>>): Record<string, string | undefined> {
  const before = Object.fromEntries(Object.keys(values).map((name) => [name, process.env[name]]))
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined) delete process.env[name]
    else process.env[name] = value
  }
  return before
}

const SERVER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 's3rver-process.mjs')

export interface S3Server {
  /** `http://127.0.0.1:<port>`, for the source's `endpoint` (with `forcePathStyle`). */
  readonly endpoint: string
  readonly port: number
  /** A client with s3rver's credentials, for arranging buckets and objects behind the source's back. */
  readonly client: S3Client
  createBucket(name: string): Promise<void>
  /** Writes (or overwrites) an object; returns its ETag without quotes. */
  put(bucket: string, key: string, body: string | Buffer): Promise<string>
  remove(bucket: string, key: string): Promise<void>
  /** Stops listening and drops every open connection, mid-response included; the data stays for `restart`. */
  stop(): Promise<void>
  /** Listens again on the same port over the same data. */
  restart(): Promise<void>
  /** Every request the server received since the last call (or its start), as `METHOD /url` (path-style: `/bucket/key?query`). */
  takeRequests(): Promise<string[]>
  /** Ends the server process and deletes the data directory. */
  close(): Promise<void>
}

type Reply = { port: number } | { requests: string[] } | 'stopped'

/** Sends a command (or none: the greeting) and waits for the process's answer. */
function ask(child: ChildProcess, command?: 'start' | 'stop' | 'requests'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const exited = (code: number | null) => reject(new Error(`the s3rver process exited (code ${code})`))
    child.once('exit', exited)
    child.once('message', (reply) => {
      child.off('exit', exited)
      resolve(reply as Reply)
    })
    if (command !== undefined) child.send(command)
  })
}

/**
 * A real S3 API (s3rver) on 127.0.0.1, on a free port, storing in a temp
 * directory: no mocked SDK. It runs in a child process (see
 * s3rver-process.mjs for why).
 */
export async function startS3(): Promise<S3Server> {
  const directory = mkdtempSync(path.join(os.tmpdir(), 'filedge-s3-'))
  const child = fork(SERVER_SCRIPT, [directory], { execArgv: ['--openssl-legacy-provider'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const greeting = await ask(child)
  if (typeof greeting !== 'object' || !('port' in greeting)) throw new Error(`the s3rver process said ${String(greeting)} instead of its port`)
  const { port } = greeting
  const endpoint = `http://127.0.0.1:${port}`
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_SECRET },
  })
  let running = true
  return {
    endpoint,
    port,
    client,
    async createBucket(name) {
      await client.send(new CreateBucketCommand({ Bucket: name }))
    },
    async put(bucket, key, body) {
      const { ETag } = await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }))
      return (ETag ?? '').replace(/"/g, '')
    },
    async remove(bucket, key) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }))
    },
    async stop() {
      await ask(child, 'stop')
      running = false
    },
    async restart() {
      if (!running) await ask(child, 'start')
      running = true
    },
    async takeRequests() {
      const reply = await ask(child, 'requests')
      if (typeof reply !== 'object' || !('requests' in reply)) throw new Error(`the s3rver process said ${JSON.stringify(reply)} instead of its request log`)
      return reply.requests
    },
    async close() {
      client.destroy()
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.disconnect()
        await exited
      }
      rmSync(directory, { recursive: true, force: true })
    },
  }
}
