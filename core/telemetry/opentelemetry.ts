import type { Attributes, Context, Counter, Histogram, Meter, Span, Tracer } from '@opentelemetry/api'
import type { ClaimRequest } from '../hooks.js'
import type { Plugin } from '../plugin.js'
import { describeError } from '../errors.js'

/**
 * OpenTelemetry, built in and free when unused: `@opentelemetry/api` is an
 * optional peer dependency, imported only if it is installed, and the hooks
 * are tapped only if the process registered a tracer or meter provider (an
 * SDK set up with `node --import ./otel.js`, say). Otherwise `apply` returns
 * without tapping anything: no span, no attribute, no call per file.
 *
 * Traces: a `filedge.run` span per run; under it a `filedge.file` span per
 * claimed file, with `filedge.claim` (the ledger's claim), `filedge.load`
 * (from the claim to the destination's commit: opening, parsing set-up) and
 * `filedge.commit` (the destination's transaction, rows streaming through
 * it, and the ledger's completion) as children. Attributes:
 * `filedge.pipeline`, `filedge.file.hash`, `filedge.file.path`,
 * `filedge.rows`, `filedge.outcome` (committed, healed, failed, skipped,
 * released), `filedge.error.code` on failures. Files skipped before any
 * claim (unchanged since the last run) get no span: a rerun over 10,000
 * settled files is not 10,000 spans.
 *
 * Metrics (meter `filedge`): counters `filedge.files` (by pipeline and
 * outcome), `filedge.rows`, `filedge.failures` (by pipeline, error code and
 * whether terminal); histograms `filedge.file.duration` and
 * `filedge.run.duration` in ms.
 *
 * The SDK's exporters are flushed when filedge closes, so spans batched by a
 * BatchSpanProcessor are sent before the CLI exits.
 */

type Api = typeof import('@opentelemetry/api')

let loading: Promise<Api | undefined> | undefined

/**
 * Where the API (1.x, our peer range) keeps what an SDK registered: a tracer
 * or meter provider, a context manager, a propagator. Registering anything
 * goes through the API, which creates this global; without it nothing was
 * registered, and the API (46 modules, 35–45 ms of every start when it is
 * installed) is not loaded to find that out.
 */
const REGISTERED = Symbol.for('opentelemetry.js.api.1')

/** The API if it is installed (an optional peer dependency) and something registered with it, once per process. */
function loadApi(): Promise<Api | undefined> {
  if ((globalThis as Record<symbol, unknown>)[REGISTERED] === undefined) return Promise.resolve(undefined)
  loading ??= import('@opentelemetry/api').then(
    (api) => api,
    () => undefined,
  )
  return loading
}

/** Whether the process registered a tracer provider: the API's global is then a proxy with a delegate. */
function tracing(api: Api): boolean {
  const provider = api.trace.getTracerProvider()
  return !(provider instanceof api.ProxyTracerProvider) || provider.getDelegateTracer('filedge') !== undefined
}

/** Whether the process registered a meter provider: without one the API hands out its one no-op meter. */
function metering(api: Api): boolean {
  return api.metrics.getMeter('filedge') !== api.createNoopMeter()
}

interface FileSpans {
  readonly file: Span
  readonly context: Context
  readonly started: number
  claim?: Span
  load?: Span
  commit?: Span
}

interface Instruments {
  readonly files: Counter
  readonly rows: Counter
  readonly failures: Counter
  readonly fileDuration: Histogram
  readonly runDuration: Histogram
}

function instruments(meter: Meter): Instruments {
  return {
    files: meter.createCounter('filedge.files', { description: 'Files by outcome: committed, healed, failed, skipped, released' }),
    rows: meter.createCounter('filedge.rows', { description: 'Rows committed' }),
    failures: meter.createCounter('filedge.failures', { description: 'Failed attempts at loading a file' }),
    fileDuration: meter.createHistogram('filedge.file.duration', { unit: 'ms', description: 'From the claim of a file to its outcome' }),
    runDuration: meter.createHistogram('filedge.run.duration', { unit: 'ms', description: 'A run, start to end' }),
  }
}

export function openTelemetryPlugin(): Plugin {
  return {
    name: 'filedge:opentelemetry',
    async apply({ hooks, worker }) {
      const api = await loadApi()
      if (api === undefined) return
      const tracer: Tracer | undefined = tracing(api) ? api.trace.getTracer('filedge') : undefined
      const meter = metering(api) ? instruments(api.metrics.getMeter('filedge')) : undefined
      if (tracer === undefined && meter === undefined) return
      const name = 'filedge:opentelemetry'
      const { SpanStatusCode } = api

      let run: { span?: Span; context: Context; started: number } | undefined
      const files = new Map<string, FileSpans>()
      const key = (pipeline: string, hash: string) => `${pipeline}\u0000${hash}`
      const child = (spans: FileSpans, spanName: string, attributes: Attributes) => tracer?.startSpan(spanName, { attributes }, spans.context)

      /** Ends whatever is still open of a file, and the file, with its outcome. */
      const finish = (pipeline: string, hash: string, outcome: string, attributes: Attributes = {}, failure?: { code: string; message: string }) => {
        const id = key(pipeline, hash)
        const spans = files.get(id)
        if (spans === undefined) return
        files.delete(id)
        for (const span of [spans.claim, spans.load, spans.commit]) {
          if (span === undefined || !span.isRecording()) continue
          if (failure !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: failure.message })
          span.end()
        }
        spans.file.setAttributes({ 'filedge.outcome': outcome, ...attributes, ...(failure === undefined ? {} : { 'filedge.error.code': failure.code }) })
        spans.file.setStatus(failure === undefined ? { code: SpanStatusCode.OK } : { code: SpanStatusCode.ERROR, message: failure.message })
        spans.file.end()
        meter?.fileDuration.record(performance.now() - spans.started, { 'filedge.pipeline': pipeline, 'filedge.outcome': outcome })
      }

      hooks.beforeRun.tap(name, ({ pipelines }) => {
        const span = tracer?.startSpan('filedge.run', { attributes: { 'filedge.worker': worker, 'filedge.pipelines': pipelines.map((pipeline) => pipeline.name) } })
        run = { ...(span === undefined ? {} : { span }), context: span === undefined ? api.context.active() : api.trace.setSpan(api.context.active(), span), started: performance.now() }
      })
      hooks.claim.intercept({
        call: (request: ClaimRequest) => {
          const { pipeline, file } = request
          const attributes = { 'filedge.pipeline': pipeline.name, 'filedge.file.hash': file.hash }
          const span = tracer?.startSpan('filedge.file', { attributes: { ...attributes, 'filedge.file.path': file.path, 'filedge.file.size': file.size } }, run?.context ?? api.context.active())
          if (span === undefined) {
            files.set(key(pipeline.name, file.hash), { file: api.trace.wrapSpanContext(api.INVALID_SPAN_CONTEXT), context: api.context.active(), started: performance.now() })
            return
          }
          const spans: FileSpans = { file: span, context: api.trace.setSpan(api.context.active(), span), started: performance.now() }
          spans.claim = child(spans, 'filedge.claim', attributes)
          files.set(key(pipeline.name, file.hash), spans)
        },
      })
      hooks.fileClaimed.tap(name, ({ pipeline, file, attempt, reclaimed }) => {
        const spans = files.get(key(pipeline.name, file.hash))
        if (spans === undefined) return
        spans.claim?.end()
        spans.file.setAttributes({ 'filedge.attempt': attempt, 'filedge.reclaimed': reclaimed })
        spans.load = child(spans, 'filedge.load', { 'filedge.pipeline': pipeline.name, 'filedge.file.hash': file.hash })
      })
      hooks.commit.intercept({
        call: (job: { pipeline: string; file: { hash: string } }) => {
          const spans = files.get(key(job.pipeline, job.file.hash))
          if (spans === undefined) return
          spans.load?.end()
          spans.commit = child(spans, 'filedge.commit', { 'filedge.pipeline': job.pipeline, 'filedge.file.hash': job.file.hash })
        },
      })
      hooks.afterCommit.tapPromise(name, async ({ pipeline, file, rows, healed }) => {
        const outcome = healed === undefined ? 'committed' : 'healed'
        finish(pipeline.name, file.hash, outcome, { 'filedge.rows': rows })
        meter?.files.add(1, { 'filedge.pipeline': pipeline.name, 'filedge.outcome': outcome })
        meter?.rows.add(rows, { 'filedge.pipeline': pipeline.name })
      })
      hooks.fileFailed.tapPromise(name, async ({ pipeline, path, hash, error, terminal }) => {
        const failure = { code: error.code, message: describeError(error) }
        if (hash !== undefined && files.has(key(pipeline.name, hash))) {
          files.get(key(pipeline.name, hash))!.file.recordException({ name: error.code, message: failure.message })
          finish(pipeline.name, hash, 'failed', { 'filedge.terminal': terminal }, failure)
        } else {
          // Failed before any claim (the file could not be read): a span of its own, ended at once.
          const span = tracer?.startSpan('filedge.file', { attributes: { 'filedge.pipeline': pipeline.name, 'filedge.file.path': path, ...(hash === undefined ? {} : { 'filedge.file.hash': hash }) } }, run?.context ?? api.context.active())
          span?.setAttributes({ 'filedge.outcome': 'failed', 'filedge.error.code': error.code, 'filedge.terminal': terminal })
          span?.setStatus({ code: SpanStatusCode.ERROR, message: failure.message })
          span?.end()
        }
        meter?.files.add(1, { 'filedge.pipeline': pipeline.name, 'filedge.outcome': 'failed' })
        meter?.failures.add(1, { 'filedge.pipeline': pipeline.name, 'filedge.error.code': error.code, 'filedge.terminal': terminal })
      })
      hooks.fileSkipped.tap(name, ({ pipeline, hash, reason }) => {
        // Claimed, then given back (the run stopped, the destination stayed locked): released. Refused by the claim
        // (committed, held by another worker): skipped. Skipped before any claim (the stat cache): no span to end.
        const spans = hash === undefined ? undefined : files.get(key(pipeline.name, hash))
        const outcome = spans?.load !== undefined ? 'released' : 'skipped'
        if (spans !== undefined) finish(pipeline.name, hash!, outcome, { 'filedge.skip.reason': reason })
        meter?.files.add(1, { 'filedge.pipeline': pipeline.name, 'filedge.outcome': outcome, 'filedge.skip.reason': reason })
      })
      hooks.afterRun.tap(name, (summary) => {
        if (run === undefined) return
        const outcome = summary.aborted !== undefined ? 'aborted' : summary.failed > 0 ? 'failed' : 'ok'
        run.span?.setAttributes({
          'filedge.outcome': outcome,
          'filedge.files.committed': summary.committed,
          'filedge.files.failed': summary.failed,
          'filedge.files.skipped': summary.skipped,
          'filedge.rows': summary.rows,
        })
        if (summary.aborted !== undefined) run.span?.setStatus({ code: SpanStatusCode.ERROR, message: describeError(summary.aborted) })
        run.span?.end()
        meter?.runDuration.record(performance.now() - run.started, { 'filedge.outcome': outcome })
        run = undefined
      })
      hooks.close.tapPromise(name, async () => {
        // Spans and metrics an SDK batches go out before the process exits (the CLI exits right after closing).
        const traces = api.trace.getTracerProvider() as { getDelegate?(): unknown }
        const providers = [traces.getDelegate?.() ?? traces, api.metrics.getMeterProvider()] as { forceFlush?(): Promise<void> }[]
        await Promise.all(providers.map((provider) => provider.forceFlush?.().catch(() => undefined)))
      })
    },
  }
}
