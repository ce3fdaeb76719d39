/**
 * What tracing costs a request on the data path, measured in-process:
 * trace context read or started, one attempt span, the traceparent header, and
 * the end of both spans — without an exporter (propagation only) and with one
 * (spans queued), plus the OTLP encoding per span that the exporter does later,
 * off the request. `node bench/tracing-cost.ts`
 */

import type { RequestRecord } from '../src/observe/events.ts';
import { silentLogger } from '../src/observe/logger.ts';
import { encodeSpans, type FinishedSpan } from '../src/observe/otlp.ts';
import { Tracer } from '../src/observe/tracing.ts';

const N = 200_000;
const record: RequestRecord = {
  time: Date.now(),
  requestId: 'r',
  clientIp: '127.0.0.1',
  method: 'GET',
  host: 'shop',
  path: '/x',
  protocol: 'HTTP/1.1',
  status: 200,
  bytesIn: 0,
  bytesOut: 21,
  service: 'shop',
  server: '127.0.0.1:9001',
  upstreamFirstByteMs: 0.4,
  upstreamMs: 0.5,
  totalMs: 0.7,
  retries: 0,
  queueWaitMs: 0,
  decision: undefined,
  errorCode: undefined,
  userAgent: 'wrk',
};
const withParent = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' };
const counters = { exported: () => undefined, dropped: () => undefined };

function perRequest(tracer: Tracer, headers: Record<string, string>): number {
  // CPU time, not wall time: on a shared machine the wall clock also counts other processes.
  const started = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    // The exporter sends and forgets its queue every batch; here it is emptied instead (no network in the measurement).
    if (i % 512 === 0) (tracer.exporter as unknown as { queue: unknown[] } | undefined)?.queue.splice(0);
    const trace = tracer.start(headers);
    const attempt = trace.startAttempt();
    trace.traceparent(attempt);
    trace.endAttempt(attempt, { server: '127.0.0.1:9001', status: 200, firstByteMs: 0.4 }, 'GET');
    trace.end(record);
  }
  const used = process.cpuUsage(started);
  return ((used.user + used.system) * 1000) / N;
}

const propagateOnly = new Tracer(silentLogger(), counters);
propagateOnly.configure({ propagate: true, sample_ratio: 1, service_name: 'velocity', otlp: undefined });
perRequest(propagateOnly, {});
const exporting = new Tracer(silentLogger(), counters);
exporting.configure({
  propagate: true,
  sample_ratio: 1,
  service_name: 'velocity',
  // A queue large enough that nothing is dropped during the loop; never flushed (the interval is long).
  otlp: { endpoint: 'http://127.0.0.1:9/v1/traces', headers: {}, batch_size: 100_000, queue_size: 100_000, flush_interval: 3_600_000, timeout: 1000 },
});
console.log(`propagation only, new trace:      ${perRequest(propagateOnly, {}).toFixed(0)} ns/request`);
console.log(`propagation only, client parent:  ${perRequest(propagateOnly, withParent).toFixed(0)} ns/request`);
console.log(`sampled, two spans queued:        ${perRequest(exporting, withParent).toFixed(0)} ns/request`);
const span: FinishedSpan = {
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '00f067aa0ba902b7',
  parentSpanId: '00f067aa0ba902b8',
  traceState: undefined,
  name: 'GET shop',
  kind: 2,
  startMs: Date.now(),
  endMs: Date.now() + 1,
  error: undefined,
  attributes: [
    ['http.request.method', 'GET'],
    ['url.path', '/x'],
    ['http.response.status_code', 200],
    ['velocity.service', 'shop'],
    ['velocity.server', '127.0.0.1:9001'],
    ['velocity.total_ms', 0.7],
  ],
};
const batch = Array.from({ length: 512 }, () => span);
const t0 = process.cpuUsage();
for (let i = 0; i < 200; i++) encodeSpans(batch, [['service.name', 'velocity']], { name: 'velocity', version: '1' });
const t1 = process.cpuUsage(t0);
console.log(`OTLP encoding (exporter, batched): ${(((t1.user + t1.system) * 1000) / (200 * 512)).toFixed(0)} ns/span`);
await exporting.close().catch(() => undefined);
process.exit(0);
