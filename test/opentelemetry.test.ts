import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { metrics, trace } from '@opentelemetry/api'
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createFiledge, resolveConfig, run, type ResolvedConfig } from '../core/index.js'
import { sqlite } from '../plugins/sqlite/index.js'

/**
 * The built-in OpenTelemetry plugin, in process, with the SDK's in-memory
 * exporters registered as the global providers, as an application would.
 */

let dir: string

function project(): ResolvedConfig {
  dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-otel-'))
  mkdirSync(path.join(dir, 'incoming'))
  writeFileSync(path.join(dir, 'incoming', 'good.csv'), 'id,n\na,1\nb,2\nc,3\n')
  writeFileSync(path.join(dir, 'incoming', 'bad.csv'), 'id,n\nx,not-a-number\n')
  return resolveConfig(
    {
      ledger: 'sqlite:ledger.db',
      pipelines: [{ name: 'orders', source: 'incoming', destination: sqlite({ path: 'warehouse.db' }), table: 'orders', columns: { id: { type: 'string', required: true }, n: 'integer' } }],
    },
    { cwd: dir },
  )
}

afterEach(() => {
  trace.disable()
  metrics.disable()
  rmSync(dir, { recursive: true, force: true })
})

describe('OpenTelemetry, registered', () => {
  let spans: InMemorySpanExporter
  let reader: PeriodicExportingMetricReader
  let exported: InMemoryMetricExporter
  beforeEach(() => {
    spans = new InMemorySpanExporter()
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }))
    exported = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
    reader = new PeriodicExportingMetricReader({ exporter: exported, exportIntervalMillis: 60_000 })
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))
  })

  it('traces a run, each file under it with its claim, load and commit, and what became of it', async () => {
    const config = project()
    const summary = await run({ config })
    expect(summary).toMatchObject({ committed: 1, failed: 1 })
    const finished = spans.getFinishedSpans()
    const named = (name: string) => finished.filter((span) => span.name === name)
    const [runSpan] = named('filedge.run')
    expect(runSpan.attributes).toMatchObject({ 'filedge.pipelines': ['orders'], 'filedge.outcome': 'failed', 'filedge.files.committed': 1, 'filedge.files.failed': 1, 'filedge.rows': 3 })
    const parentOf = (span: ReadableSpan) => finished.find((candidate) => candidate.spanContext().spanId === span.parentSpanContext?.spanId)

    const files = named('filedge.file')
    expect(files).toHaveLength(2)
    for (const file of files) {
      expect(parentOf(file)).toBe(runSpan)
      expect(file.spanContext().traceId).toBe(runSpan.spanContext().traceId)
      expect(file.attributes['filedge.pipeline']).toBe('orders')
      expect(file.attributes['filedge.file.hash']).toMatch(/^[0-9a-f]{64}$/)
    }
    const good = files.find((file) => file.attributes['filedge.file.path'] === 'incoming/good.csv')!
    expect(good.attributes).toMatchObject({ 'filedge.outcome': 'committed', 'filedge.rows': 3, 'filedge.attempt': 1 })
    expect(good.status.code).toBe(1)
    const childrenOf = (span: ReadableSpan) => finished.filter((candidate) => parentOf(candidate) === span).map((candidate) => candidate.name)
    expect(childrenOf(good)).toEqual(['filedge.claim', 'filedge.load', 'filedge.commit'])
    for (const name of ['filedge.claim', 'filedge.load', 'filedge.commit']) {
      const step = finished.find((span) => span.name === name && parentOf(span) === good)!
      expect(step.attributes['filedge.file.hash']).toBe(good.attributes['filedge.file.hash'])
    }

    const bad = files.find((file) => file.attributes['filedge.file.path'] === 'incoming/bad.csv')!
    expect(bad.attributes).toMatchObject({ 'filedge.outcome': 'failed', 'filedge.error.code': 'ROW_INVALID', 'filedge.terminal': false })
    expect(bad.status).toMatchObject({ code: 2, message: expect.stringContaining('cannot coerce "not-a-number" to integer') })
    expect(bad.events.map((event) => [event.name, event.attributes?.['exception.type']])).toEqual([['exception', 'ROW_INVALID']])
    // Its rows never reached a commit that succeeded: the commit it started is marked failed with it.
    const badCommit = finished.find((span) => span.name === 'filedge.commit' && parentOf(span) === bad)
    expect(badCommit?.status.code).toBe(2)

    // filedge flushed the providers as it closed (so a CLI run exports before it exits); the totals are in the last export.
    expect(exported.getMetrics().length).toBeGreaterThan(0)
    await reader.forceFlush()
    const points = (name: string) =>
      [exported.getMetrics().at(-1)!]
        .flatMap((resource: ResourceMetrics) => resource.scopeMetrics.flatMap((scope) => scope.metrics))
        .filter((metric) => metric.descriptor.name === name)
        .flatMap((metric) => metric.dataPoints as { attributes: Record<string, unknown>; value: unknown }[])
    expect(points('filedge.files').map(({ attributes, value }) => [attributes['filedge.outcome'], value]).sort()).toEqual([
      ['committed', 1],
      ['failed', 1],
    ])
    expect(points('filedge.rows')).toEqual([expect.objectContaining({ attributes: { 'filedge.pipeline': 'orders' }, value: 3 })])
    expect(points('filedge.failures')).toEqual([expect.objectContaining({ attributes: { 'filedge.pipeline': 'orders', 'filedge.error.code': 'ROW_INVALID', 'filedge.terminal': false }, value: 1 })])
    expect(points('filedge.file.duration').map((point) => (point.value as { count: number }).count).reduce((a, b) => a + b)).toBe(2)
    expect(points('filedge.run.duration')).toHaveLength(1)

    // A rerun: the failed file is retried; the committed one, written too recently for the stat cache to vouch for it,
    // is hashed and refused by the claim (a file skipped before any claim has no span at all).
    spans.reset()
    await run({ config })
    const again = spans.getFinishedSpans().filter((span) => span.name === 'filedge.file')
    expect(again.map((span) => [span.attributes['filedge.file.path'], span.attributes['filedge.outcome'], span.attributes['filedge.attempt'] ?? span.attributes['filedge.skip.reason']]).sort()).toEqual([
      ['incoming/bad.csv', 'failed', 2],
      ['incoming/good.csv', 'skipped', 'committed'],
    ])
  })
})

describe('OpenTelemetry, not registered', () => {
  it('taps nothing: the API is there, no provider is', async () => {
    const filedge = await createFiledge({ config: project() })
    try {
      const tapped = Object.entries(filedge.hooks).filter(([, hook]) => (hook as { taps: { name: string }[] }).taps.some((tap) => tap.name === 'filedge:opentelemetry'))
      expect(tapped).toEqual([])
      const intercepted = (filedge.hooks.claim as unknown as { interceptors: unknown[] }).interceptors
      // The one interceptor every hook has attributes errors to plugins; none of ours.
      expect(intercepted).toHaveLength(1)
    } finally {
      await filedge.close()
    }
  })
})
