/** Trace Context parsing, the OTLP encoder (decoded with the OpenTelemetry definitions), and gRPC helpers. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeSpans } from '../../src/observe/otlp.ts';
import {
  cleanTracestate,
  formatTraceparent,
  NEW_TRACE_ATTEMPT_SPAN,
  NEW_TRACE_REQUEST_SPAN,
  NEW_TRACE_TRACE_ID,
  newSpanId,
  newTraceRecord,
  parseTraceparent,
} from '../../src/observe/trace-context.ts';
import { Tracer } from '../../src/observe/tracing.ts';
import { encodeGrpcMessage, formatGrpcTimeout, grpcStatusFor, methodMatches, parseGrpcTimeout } from '../../src/proxy/grpc.ts';
import { healthCheckRequest, servingStatus } from '../../src/upstream/grpc-health.ts';
import { decodeExport } from '../support/otlp.ts';
import { heapHeldByKept } from '../support/retained.ts';

const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const S = '00f067aa0ba902b7';

describe('W3C traceparent', () => {
  test('a valid header is read with its sampled flag', () => {
    assert.deepEqual(parseTraceparent(`00-${T}-${S}-01`), { traceId: T, spanId: S, sampled: true });
    assert.deepEqual(parseTraceparent(`00-${T}-${S}-00`), { traceId: T, spanId: S, sampled: false });
    // A later version may carry more fields after a dash; they are ignored.
    assert.deepEqual(parseTraceparent(`01-${T}-${S}-01-whatever`), { traceId: T, spanId: S, sampled: true });
  });

  test('invalid headers start a new trace (undefined)', () => {
    for (const bad of [
      undefined,
      '',
      `00-${T}-${S}`,
      `00-${T}-${S}-01-extra`,
      `ff-${T}-${S}-01`,
      `00-${'0'.repeat(32)}-${S}-01`,
      `00-${T}-${'0'.repeat(16)}-01`,
      `00-${T.toUpperCase()}-${S}-01`,
      `00_${T}-${S}-01`,
      `00-${T}-${S}-0x`,
    ])
      assert.equal(parseTraceparent(bad), undefined, String(bad));
  });

  test('new ids are random lowercase hex of the right length, never all zero', () => {
    // Past one random fill (512 records) and several runs (128 records each).
    const records = Array.from({ length: 2000 }, () => newTraceRecord());
    const traceIds = new Set<string>();
    const spanIds = new Set<string>();
    for (const record of records) {
      assert.match(record, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01[0-9a-f]{16}$/);
      const traceId = record.slice(NEW_TRACE_TRACE_ID, NEW_TRACE_TRACE_ID + 32);
      assert.notEqual(traceId, '0'.repeat(32));
      traceIds.add(traceId);
      spanIds.add(record.slice(NEW_TRACE_ATTEMPT_SPAN, NEW_TRACE_ATTEMPT_SPAN + 16)).add(record.slice(NEW_TRACE_REQUEST_SPAN, NEW_TRACE_REQUEST_SPAN + 16));
    }
    assert.equal(traceIds.size, 2000);
    assert.equal(spanIds.size, 4000);
    assert.match(newSpanId(), /^[0-9a-f]{16}$/);
    assert.equal(formatTraceparent(T, S, true), `00-${T}-${S}-01`);
  });

  test('a trace id kept alive holds a string of a run of records, not of every record made', () => {
    // One id of every 1024 kept, each from another run: 200 runs of 128 records (9 KiB) are 1.8 MB.
    const held = heapHeldByKept(() => newTraceRecord().slice(NEW_TRACE_TRACE_ID, NEW_TRACE_TRACE_ID + 32), 1024, 200);
    assert.ok(held < 3.5 * 1024 * 1024, `200 kept trace ids hold ${(held / 1024 / 1024).toFixed(1)} MB`);
  });

  test("a new trace's ids and traceparents: the first attempt's from its record, a retry's made apart", () => {
    const tracer = new Tracer({} as never, {} as never);
    const trace = tracer.start({}, 0);
    assert.match(trace.traceId, /^[0-9a-f]{32}$/);
    assert.match(trace.spanId, /^[0-9a-f]{16}$/);
    assert.equal(trace.parentSpanId, undefined);
    const first = trace.startAttempt();
    const retry = trace.startAttempt();
    for (const span of [first, retry]) {
      assert.match(span.spanId, /^[0-9a-f]{16}$/);
      assert.equal(trace.traceparent(span), `00-${trace.traceId}-${span.spanId}-01`);
    }
    assert.equal(new Set([trace.spanId, first.spanId, retry.spanId]).size, 3);
    // Not sampled (a ratio of 0): the flags say so on the first attempt too.
    tracer.configure({ propagate: true, sample_ratio: 0, service_name: 'velocity' } as never);
    const unsampled = tracer.start({}, 0);
    const span = unsampled.startAttempt();
    assert.equal(unsampled.traceparent(span), `00-${unsampled.traceId}-${span.spanId}-00`);
    // A client's trace is continued: its id, and the client's span as the request span's parent.
    const continued = tracer.start({ traceparent: `00-${T}-${S}-01` }, 0);
    assert.equal(continued.traceId, T);
    assert.equal(continued.parentSpanId, S);
    const attempt = continued.startAttempt();
    assert.equal(continued.traceparent(attempt), `00-${T}-${attempt.spanId}-01`);
  });

  test('tracestate is passed on when within the limits', () => {
    assert.equal(cleanTracestate('a=1,b=2'), 'a=1,b=2');
    assert.equal(cleanTracestate(['a=1', 'b=2']), 'a=1,b=2');
    assert.equal(cleanTracestate('x'.repeat(513)), undefined);
    assert.equal(cleanTracestate(Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(',')), undefined);
  });
});

describe('the OTLP encoder', () => {
  test('writes an ExportTraceServiceRequest the OpenTelemetry definitions decode field for field', () => {
    const body = encodeSpans(
      [
        {
          traceId: T,
          spanId: S,
          parentSpanId: 'a1b2c3d4e5f60718',
          traceState: 'v=1',
          name: 'GET shop',
          kind: 2,
          startMs: 1_700_000_000_123.25,
          endMs: 1_700_000_000_456.5,
          attributes: [
            ['s', 'text ünïcode'],
            ['i', 42],
            ['neg', -7],
            ['d', 1.5],
            ['b', true],
          ],
          error: 'UPSTREAM_RESET',
        },
        { traceId: T, spanId: 'ffffffffffffffff', parentSpanId: undefined, traceState: undefined, name: 'x', kind: 3, startMs: 1, endMs: 2, attributes: [], error: undefined },
      ],
      [['service.name', 'velocity']],
      { name: 'velocity', version: '1' },
    );
    const [a, b] = decodeExport(body);
    assert.ok(a && b);
    assert.equal(a.traceId, T);
    assert.equal(a.spanId, S);
    assert.equal(a.parentSpanId, 'a1b2c3d4e5f60718');
    assert.equal(a.traceState, 'v=1');
    assert.equal(a.name, 'GET shop');
    assert.equal(a.kind, 2);
    assert.equal(a.startNs, 1_700_000_000_123_250_000n);
    assert.equal(a.endNs, 1_700_000_000_456_500_000n);
    assert.deepEqual(a.attributes, { s: 'text ünïcode', i: 42, neg: -7, d: 1.5, b: true });
    assert.deepEqual(a.status, { code: 2, message: 'UPSTREAM_RESET' });
    assert.equal(a.resource['service.name'], 'velocity');
    assert.equal(b.parentSpanId, '');
    assert.equal(b.kind, 3);
    assert.equal(b.status.code, 0);
  });
});

describe('gRPC helpers', () => {
  test('grpc-timeout is read in every unit and written in milliseconds', () => {
    assert.equal(parseGrpcTimeout('100m'), 100);
    assert.equal(parseGrpcTimeout('5S'), 5000);
    assert.equal(parseGrpcTimeout('2M'), 120_000);
    assert.equal(parseGrpcTimeout('1H'), 3_600_000);
    assert.equal(parseGrpcTimeout('2500u'), 2.5);
    assert.equal(parseGrpcTimeout('123456789m'), undefined, 'at most 8 digits');
    assert.equal(parseGrpcTimeout('10x'), undefined);
    assert.equal(formatGrpcTimeout(0.2), '1m');
    assert.equal(formatGrpcTimeout(1234.1), '1235m');
  });

  test('methods match exactly or by service wildcard', () => {
    assert.ok(methodMatches('/a.B/Get', ['/a.B/Get']));
    assert.ok(methodMatches('/a.B/Get', ['/a.B/*']));
    assert.ok(!methodMatches('/a.B/Get', ['/a.C/*', '/a.B/Put']));
    assert.ok(!methodMatches('/a.BB/Get', ['/a.B/*']));
  });

  test("Velocity's errors map to the gRPC statuses clients act on", () => {
    assert.equal(grpcStatusFor({ code: 'RATE_LIMITED', status: 429 }), 8);
    assert.equal(grpcStatusFor({ code: 'UPSTREAM_TIMEOUT', status: 504 }), 4);
    assert.equal(grpcStatusFor({ code: 'NO_HEALTHY_SERVER', status: 503 }), 14);
    assert.equal(grpcStatusFor({ code: 'UPSTREAM_RESET', status: 502 }), 14);
    assert.equal(grpcStatusFor({ code: 'NO_ROUTE', status: 404 }), 12);
    assert.equal(grpcStatusFor({ code: 'IP_DENIED', status: 403 }), 7);
    assert.equal(encodeGrpcMessage('100% sure\n'), '100%25 sure%0A');
  });

  test('the health check messages are the grpc.health.v1 protobuf', () => {
    assert.deepEqual([...healthCheckRequest('')], [0, 0, 0, 0, 0]);
    assert.deepEqual([...healthCheckRequest('ab')], [0, 0, 0, 0, 4, 0x0a, 2, 0x61, 0x62]);
    assert.equal(servingStatus(Buffer.from([0, 0, 0, 0, 2, 0x08, 1])), 1);
    assert.equal(servingStatus(Buffer.from([0, 0, 0, 0, 2, 0x08, 2])), 2);
    assert.equal(servingStatus(Buffer.from([0, 0, 0, 0, 0])), 0);
  });
});
