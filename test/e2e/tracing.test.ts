/**
 * W3C Trace Context through the binary: the server is told the client's trace with
 * Velocity's attempt span as its parent; spans go to an OTLP endpoint and are
 * decoded with the OpenTelemetry definitions; retries are sibling attempt spans;
 * the access-log store finds a request by trace id; a collector that is down costs
 * no request and its dropped spans are counted.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { echoClient, grpc, startGrpcBackends, unary } from '../support/grpc/index.ts';
import { startOtlpReceiver } from '../support/otlp.ts';
import { freePort } from '../support/spawn.ts';
import { eventually, get, startBackendProcess, startVelocityProcess, testAgent } from '../support/velocity.ts';

const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';

async function adminJson(port: number, path: string) {
  const res = await request(`http://127.0.0.1:${port}${path}`);
  return (await res.body.json()) as Record<string, unknown>;
}

describe('tracing through the binary', () => {
  test("a gRPC server gets the client's trace id with Velocity's attempt span as parent; spans are exported over OTLP and the log store finds the call by trace id", async (t) => {
    const [backend] = await startGrpcBackends(t, 1);
    const receiver = await startOtlpReceiver(t);
    const adminPort = await freePort();
    const velocity = await startVelocityProcess(
      t,
      `listeners:
  - type: http
    listen: "127.0.0.1:0"
    http2: true
admin: { listen: "127.0.0.1:${adminPort}" }
logs: { store: memory, flush_interval: 50ms }
tracing:
  service_name: edge-balancer
  otlp: { endpoint: "${receiver.endpoint}", flush_interval: 50ms }
services:
  - name: echo
    servers: [ ${backend?.url} ]
`,
    );
    const client = echoClient(t, `127.0.0.1:${velocity.port}`);
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`);
    metadata.set('tracestate', 'vendor=opaque');
    const call = await unary(client, { text: 'traced' }, { metadata });
    assert.ok(call.ok, !call.ok ? call.error.message : '');
    const [version, traceId, parentId, flags] = call.reply.traceparent.split('-');
    assert.equal(version, '00');
    assert.equal(traceId, CLIENT_TRACE, "the server sees the client's trace");
    assert.notEqual(parentId, CLIENT_SPAN, "the server's parent is Velocity's span, not the client's");
    assert.equal(flags, '01');

    await eventually(() => receiver.spans.filter((s) => s.traceId === CLIENT_TRACE).length >= 2, 30_000, 'request and attempt spans exported');
    assert.ok(receiver.contentTypes.every((c) => c === 'application/x-protobuf'));
    const spans = receiver.spans.filter((s) => s.traceId === CLIENT_TRACE);
    const attempt = spans.find((s) => s.spanId === parentId);
    assert.ok(attempt, "the server's parent span is exported");
    assert.equal(attempt.kind, 3, 'an attempt is a CLIENT span');
    const requestSpan = spans.find((s) => s.spanId === attempt.parentSpanId);
    assert.ok(requestSpan, "the attempt's parent is the request span");
    assert.equal(requestSpan.kind, 2, 'the request is a SERVER span');
    assert.equal(requestSpan.parentSpanId, CLIENT_SPAN, "the request span's parent is the client's span");
    assert.equal(requestSpan.traceState, 'vendor=opaque');
    assert.equal(requestSpan.resource['service.name'], 'edge-balancer');
    assert.equal(requestSpan.attributes['velocity.service'], 'echo');
    assert.equal(requestSpan.attributes['rpc.method'], '/velocity.test.Echo/Unary');
    assert.equal(requestSpan.attributes['rpc.grpc.status_code'], 0);
    assert.equal(typeof requestSpan.attributes['velocity.queue_wait_ms'], 'number');
    assert.equal(attempt.attributes['velocity.server'], `127.0.0.1:${backend?.port}`);
    assert.ok(requestSpan.startNs <= attempt.startNs && attempt.endNs <= requestSpan.endNs, 'the attempt lies within the request');

    await eventually(async () => ((await adminJson(adminPort, `/api/v1/logs?trace_id=${CLIENT_TRACE}`)).entries as unknown[]).length === 1, 30_000, 'the call is in the log store');
    const [entry] = (await adminJson(adminPort, `/api/v1/logs?trace_id=${CLIENT_TRACE}`)).entries as { spanId: string; traceId: string }[];
    assert.equal(entry?.spanId, requestSpan.spanId);
    const other = (await adminJson(adminPort, `/api/v1/logs?trace_id=${'1'.repeat(32)}`)).entries as unknown[];
    assert.equal(other.length, 0);
  });

  test('a retried request shows its attempts as sibling spans, and a request without traceparent starts a trace', async (t) => {
    const live = await startBackendProcess(t, 'live');
    const deadPort = await freePort();
    const receiver = await startOtlpReceiver(t);
    const velocity = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
tracing:
  otlp: { endpoint: "${receiver.endpoint}", flush_interval: 50ms }
services:
  - name: web
    passive_health: { enabled: false }
    circuit_breaker: { enabled: false }
    servers: [ "http://127.0.0.1:${deadPort}", ${live.url} ]
`,
    );
    const agent = testAgent(t);
    for (let i = 0; i < 4; i++) assert.equal((await get(agent, `${velocity.url}/`)).status, 200);
    await eventually(() => receiver.spans.filter((s) => s.kind === 2).length >= 4, 30_000, 'four request spans exported');
    const retried = receiver.spans.find((s) => s.kind === 2 && s.attributes['velocity.retries'] === 1);
    assert.ok(retried, 'a request was retried');
    assert.equal(retried.parentSpanId, '', 'a request without traceparent is a root span');
    const attempts = receiver.spans
      .filter((s) => s.parentSpanId === retried.spanId)
      .sort((a, b) => Number(a.attributes['velocity.attempt']) - Number(b.attributes['velocity.attempt']));
    assert.equal(attempts.length, 2, 'two sibling attempt spans');
    assert.equal(attempts[0]?.attributes['velocity.server'], `127.0.0.1:${deadPort}`);
    assert.equal(attempts[0]?.attributes['error.type'], 'UPSTREAM_CONNECT_FAILED');
    assert.equal(attempts[0]?.status.code, 2, 'the failed attempt has status ERROR');
    assert.equal(attempts[1]?.attributes['http.response.status_code'], 200);
    assert.equal(attempts[1]?.status.code, 0);
  });

  test('a collector that is down costs no request; dropped spans are counted', async (t) => {
    const live = await startBackendProcess(t, 'live');
    const downPort = await freePort();
    const adminPort = await freePort();
    const velocity = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:${adminPort}" }
tracing:
  otlp: { endpoint: "http://127.0.0.1:${downPort}/v1/traces", flush_interval: 50ms, timeout: 1s }
services:
  - name: web
    servers: [ ${live.url} ]
`,
    );
    const agent = testAgent(t);
    for (let i = 0; i < 50; i++) assert.equal((await get(agent, `${velocity.url}/`)).status, 200);
    const dropped = async () => {
      const text = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text();
      return Number(/^velocity_trace_spans_dropped_total (\d+)/m.exec(text)?.[1] ?? 0);
    };
    await eventually(async () => (await dropped()) >= 100, 30_000, 'the 100 spans of 50 requests are counted as dropped');
  });
  test('new traces are sampled at sample_ratio, a parent decides for its own; the server is told the decision and only sampled requests are exported', async (t) => {
    const live = await startBackendProcess(t, 'live');
    const receiver = await startOtlpReceiver(t);
    const velocity = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
tracing:
  sample_ratio: 0.25
  otlp: { endpoint: "${receiver.endpoint}", flush_interval: 50ms }
services:
  - name: web
    servers: [ ${live.url} ]
`,
    );
    const agent = testAgent(t);
    /** The sampled flag of the traceparent the server received. */
    const sampledFlag = async (headers: Record<string, string> = {}) => {
      const res = await get(agent, `${velocity.url}/headers`, { headers });
      assert.equal(res.status, 200);
      const seen = (JSON.parse(res.body) as { headers: Record<string, string> }).headers;
      return { traceId: seen.traceparent?.split('-')[1] as string, sampled: seen.traceparent?.endsWith('-01') === true };
    };
    const fresh = [];
    for (let i = 0; i < 400; i++) fresh.push(await sampledFlag());
    const parented = (n: number, flags: string) => Array.from({ length: n }, (_, i) => `00-${`${flags}${i}`.padStart(32, 'a')}-${CLIENT_SPAN}-${flags}`);
    for (const traceparent of parented(20, '01')) assert.equal((await sampledFlag({ traceparent })).sampled, true, 'a sampled parent is followed');
    for (const traceparent of parented(20, '00')) assert.equal((await sampledFlag({ traceparent })).sampled, false, 'an unsampled parent is followed');
    // Spans leave in the order requests end: once this last one is exported, every earlier one is.
    await sampledFlag({ traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01` });
    await eventually(() => receiver.spans.some((s) => s.traceId === CLIENT_TRACE && s.kind === 2), 30_000, 'the last request span is exported');

    // 400 draws at 0.25: 100 expected, standard deviation 8.7; [50, 150] is more than 5 deviations each way,
    // and far from 0 or 400 (the ratio ignored).
    const sampled = fresh.filter((f) => f.sampled);
    assert.ok(sampled.length >= 50 && sampled.length <= 150, `${sampled.length} of 400 new traces sampled at 0.25`);
    const exported = new Set(receiver.spans.filter((s) => s.kind === 2).map((s) => s.traceId));
    assert.deepEqual(
      fresh.filter((f) => exported.has(f.traceId)),
      sampled,
      'exactly the sampled new traces are exported',
    );
    assert.equal(parented(20, '01').filter((p) => exported.has(p.split('-')[1] as string)).length, 20);
    assert.equal(parented(20, '00').filter((p) => exported.has(p.split('-')[1] as string)).length, 0);
  });
});
