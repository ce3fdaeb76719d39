/**
 * gRPC through the binary, with real @grpc/grpc-js servers and clients: every
 * call balanced on its own, the four call kinds with a server killed mid-stream,
 * deadlines, the grpc health check, GOAWAY under load, and rate limits as gRPC statuses.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { type CallResult, type EchoClient, echoClient, grpc, startGrpcBackends, unary } from '../support/grpc/index.ts';
import { freePort } from '../support/spawn.ts';
import { eventually, load, startVelocityProcess } from '../support/velocity.ts';

/**
 * The call ended DEADLINE_EXCEEDED where the server would have answered OK after 5 s: either Velocity's
 * timer answered (x-velocity-error UPSTREAM_TIMEOUT) or the server honoured the grpc-timeout Velocity sent it.
 */
function assertServiceDeadline(result: CallResult): void {
  assert.ok(!result.ok, 'the slow call did not succeed');
  assert.equal(result.error.code, grpc.status.DEADLINE_EXCEEDED);
  const answeredBy = result.error.metadata.get('x-velocity-error')[0] ?? result.error.details;
  assert.match(String(answeredBy), /^(UPSTREAM_TIMEOUT|Deadline exceeded)$/);
}

const velocityYaml = (servers: string[], extra = '', admin = 'enabled: false') => `listeners:
  - type: http
    listen: "127.0.0.1:0"
    http2: true
admin: { ${admin} }
services:
  - name: echo
    policy: round-robin
    servers:
${servers.map((s) => `      - ${s}`).join('\n')}
${extra}`;

describe('gRPC through the binary', () => {
  test('3,000 unary calls over one client connection spread evenly over 3 servers', async (t) => {
    const backends = await startGrpcBackends(t, 3);
    const velocity = await startVelocityProcess(t, velocityYaml(backends.map((b) => b.url)));
    const client = echoClient(t, `127.0.0.1:${velocity.port}`);
    const results = await load(3000, 50, (i) => unary(client, { text: `call ${i}` }));
    const failed = results.filter((r) => !r.ok);
    assert.equal(failed.length, 0, `failed calls: ${failed.map((f) => !f.ok && f.error.message).slice(0, 3)}`);
    const per = new Map<string, number>();
    for (const r of results) if (r.ok) per.set(r.reply.server, (per.get(r.reply.server) ?? 0) + 1);
    assert.deepEqual([...per.keys()].sort(), ['g1', 'g2', 'g3']);
    for (const [server, n] of per) assert.equal(n, 1000, `${server} got ${n} calls`);
  });
});

/** A unary call's server after a failure: it must be one that is still running. */
async function nextCallIsServedBy(client: EchoClient, alive: string[]): Promise<void> {
  const after = await unary(client, { text: 'after the kill' });
  assert.ok(after.ok, `the next call failed: ${!after.ok && after.error.message}`);
  assert.ok(alive.includes(after.reply.server), `the next call went to ${after.reply.server}`);
}

describe('gRPC streaming through the binary, with a server killed mid-stream', () => {
  test('server, client and bidirectional streams carry 1,000 messages; a kill mid-stream ends the call UNAVAILABLE and the next call goes to a live server', async (t) => {
    const backends = await startGrpcBackends(t, 3);
    const velocity = await startVelocityProcess(t, velocityYaml(backends.map((b) => b.url)));
    const client = echoClient(t, `127.0.0.1:${velocity.port}`);
    const byName = new Map(backends.map((b) => [b.name, b]));
    const alive = new Set(backends.map((b) => b.name));

    // Complete calls of each kind: every message arrives, in order.
    const serverStream = await collectServerStream(client, 1000);
    assert.equal(serverStream.error, undefined);
    assert.deepEqual(
      serverStream.replies.map((r) => r.count),
      Array.from({ length: 1000 }, (_, i) => i),
    );
    const clientStream = await clientStreamCall(client, 1000);
    assert.equal(clientStream.count, 1000);
    const bidi = await bidiCall(client, 1000);
    assert.equal(bidi.replies.length, 1000);
    assert.deepEqual(
      bidi.replies.map((r) => r.text),
      Array.from({ length: 1000 }, (_, i) => `m${i}`),
    );

    // Server streaming: kill the server after 100 of 1,000 messages.
    const killedServerStream = await collectServerStream(client, 1000, 5, async (first) => {
      alive.delete(first.server);
      await byName.get(first.server)?.kill();
    });
    assert.equal(killedServerStream.error?.code, grpc.status.UNAVAILABLE, `got ${killedServerStream.error?.message}`);
    assert.ok(killedServerStream.replies.length < 1000);
    await nextCallIsServedBy(client, [...alive]);

    // Client streaming: the server that took the call is killed after 300 messages are sent.
    const before = new Map(backends.map((b) => [b.name, b.count('serves ClientStream')]));
    const killedClientStream = await clientStreamCall(client, 1000, 5, async () => {
      const takenBy = () => backends.find((b) => alive.has(b.name) && b.count('serves ClientStream') > (before.get(b.name) ?? 0));
      await eventually(() => takenBy() !== undefined, 30_000, 'a server took the client stream');
      const serving = takenBy() as (typeof backends)[number];
      alive.delete(serving.name);
      await serving.kill();
    });
    assert.equal(killedClientStream.error?.code, grpc.status.UNAVAILABLE, `got ${killedClientStream.error?.message}`);
    await nextCallIsServedBy(client, [...alive]);

    // Bidirectional: the echoing server is killed after 100 echoes.
    const killedBidi = await bidiCall(client, 1000, 5, async (first) => {
      alive.delete(first.server);
      await byName.get(first.server)?.kill();
    });
    assert.equal(killedBidi.error?.code, grpc.status.UNAVAILABLE, `got ${killedBidi.error?.message}`);
    assert.equal(alive.size, 0, 'each kind killed a different server');
  });
});

type Reply = { text: string; server: string; count: number };

/** A server stream of `count` messages; `onHundred` runs once after the 100th. */
function collectServerStream(
  client: EchoClient,
  count: number,
  intervalMs = 0,
  onHundred?: (first: Reply) => Promise<void>,
): Promise<{ replies: Reply[]; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const replies: Reply[] = [];
    const call = client.ServerStream({ count, interval_ms: intervalMs });
    call.on('data', (r: Reply) => {
      replies.push(r);
      if (replies.length === 100 && onHundred) void onHundred(replies[0] as Reply);
    });
    call.on('error', (error: grpc.ServiceError) => resolve({ replies, error }));
    call.on('end', () => resolve({ replies }));
  });
}

/** Sends `count` messages (pausing `intervalMs` each after the first 300, where `at300` runs). */
function clientStreamCall(client: EchoClient, count: number, intervalMs = 0, at300?: () => Promise<void>): Promise<{ count?: number; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const call = client.ClientStream((error: grpc.ServiceError | null, reply: Reply) => resolve(error ? { error } : { count: reply.count }));
    void (async () => {
      for (let i = 0; i < count; i++) {
        if (i === 300 && at300) await at300();
        if (i >= 300 && intervalMs > 0) await new Promise((r) => setTimeout(r, intervalMs));
        if (call.destroyed || call.writableEnded) return;
        if (!call.write({ text: `m${i}` })) await new Promise((r) => call.once('drain', r));
      }
      call.end();
    })();
  });
}

/** Writes `count` messages, each after the previous echo (so the call is truly interactive). */
function bidiCall(client: EchoClient, count: number, intervalMs = 0, onHundred?: (first: Reply) => Promise<void>): Promise<{ replies: Reply[]; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const replies: Reply[] = [];
    const call = client.Bidi();
    let sent = 0;
    const send = () => {
      if (sent < count) call.write({ text: `m${sent++}` });
      else call.end();
    };
    call.on('data', (r: Reply) => {
      replies.push(r);
      if (replies.length === 100 && onHundred) void onHundred(replies[0] as Reply);
      if (intervalMs > 0 && replies.length >= 100) setTimeout(send, intervalMs);
      else send();
    });
    call.on('error', (error: grpc.ServiceError) => resolve({ replies, error }));
    call.on('end', () => resolve({ replies }));
    send();
  });
}

describe('gRPC deadlines, health, GOAWAY and rate limits through the binary', () => {
  test("the client's deadline is honoured, and bounded by the service's total timeout, as DEADLINE_EXCEEDED", async (t) => {
    const backends = await startGrpcBackends(t, 1);
    const velocity = await startVelocityProcess(t, velocityYaml([backends[0]?.url as string], '    timeouts: { total: 800ms }\n'));
    const client = echoClient(t, `127.0.0.1:${velocity.port}`);
    const quick = await unary(client, { text: 'quick', delay_ms: 10 }, { deadlineMs: 20_000 });
    assert.ok(quick.ok, 'a call within its deadline succeeds');
    const clientDeadline = await unary(client, { text: 'slow', delay_ms: 5_000 }, { deadlineMs: 300 });
    assert.equal(!clientDeadline.ok && clientDeadline.error.code, grpc.status.DEADLINE_EXCEEDED);
    // No deadline from the client: the service's 800 ms total applies. Velocity also passes the deadline on as
    // grpc-timeout, so on a busy machine the server may give up a moment before Velocity's own timer does.
    assertServiceDeadline(await unary(client, { text: 'slow', delay_ms: 5_000 }));
    // A client deadline longer than the service's is cut to the service's.
    assertServiceDeadline(await unary(client, { text: 'slow', delay_ms: 5_000 }, { deadlineMs: 60_000 }));
  });

  test('the grpc health check takes a NOT_SERVING server out and brings it back when SERVING', async (t) => {
    const backends = await startGrpcBackends(t, 2);
    const velocity = await startVelocityProcess(
      t,
      velocityYaml(
        backends.map((b) => b.url),
        '    health: { type: grpc, interval: 200ms, timeout: 2s, healthy_threshold: 1, unhealthy_threshold: 1 }\n',
      ),
    );
    const client = echoClient(t, `127.0.0.1:${velocity.port}`);
    const g1 = echoClient(t, `127.0.0.1:${backends[0]?.port}`);
    const servers = async (n: number) => new Set((await Promise.all(Array.from({ length: n }, () => unary(client, { text: 'x' })))).map((r) => (r.ok ? r.reply.server : 'failed')));
    await eventually(async () => (await servers(6)).size === 2, 90_000, 'both servers serve');
    const setHealth = (serving: boolean) => new Promise<void>((resolve, reject) => g1.SetHealth({ serving }, (e: unknown) => (e ? reject(e) : resolve())));
    await setHealth(false);
    await eventually(async () => [...(await servers(10))].join() === 'g2', 90_000, 'only g2 serves once g1 says NOT_SERVING');
    await setHealth(true);
    await eventually(async () => (await servers(10)).has('g1'), 90_000, 'g1 serves again once it says SERVING');
  });

  test('servers sending GOAWAY during load (max connection age) cost no call', async (t) => {
    const backends = await startGrpcBackends(t, 2, ['--max-connection-age', '200']);
    const velocity = await startVelocityProcess(t, velocityYaml(backends.map((b) => b.url)));
    const client = echoClient(t, `127.0.0.1:${velocity.port}`);
    // Load runs until each server has closed at least 3 of Velocity's connections (seen as the calls' peers),
    // however fast or slow the machine is, bounded in calls.
    const peers = new Map<string, Set<string>>();
    const failed: CallResult[] = [];
    let sent = 0;
    const enoughGoaways = () => peers.size === 2 && [...peers.values()].every((p) => p.size >= 4);
    while (!enoughGoaways() && sent < 20_000) {
      for (const r of await load(200, 20, (i) => unary(client, { text: `call ${sent + i}`, delay_ms: i % 10 }))) {
        if (!r.ok) failed.push(r);
        else {
          const seen = peers.get(r.reply.server) ?? new Set<string>();
          seen.add(r.reply.peer);
          peers.set(r.reply.server, seen);
        }
      }
      sent += 200;
    }
    assert.ok(enoughGoaways(), `connections per server after ${sent} calls: ${[...peers].map(([s, p]) => `${s}=${p.size}`)}`);
    assert.equal(failed.length, 0, `failed: ${failed.map((f) => !f.ok && f.error.message).slice(0, 3)} of ${sent} calls`);
  });

  test('a rate-limited call gets RESOURCE_EXHAUSTED as a gRPC status, not a text page; calls are counted per method and status', async (t) => {
    const backends = await startGrpcBackends(t, 1);
    const adminPort = await freePort();
    const velocity = await startVelocityProcess(t, velocityYaml([backends[0]?.url as string], '    rate_limits: [{ rate: 2/m, burst: 2 }]\n', `listen: "127.0.0.1:${adminPort}"`));
    const client = echoClient(t, `127.0.0.1:${velocity.port}`);
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await unary(client, { text: `call ${i}` }));
    assert.deepEqual(
      results.map((r) => (r.ok ? 'OK' : grpc.status[r.error.code])),
      ['OK', 'OK', 'RESOURCE_EXHAUSTED', 'RESOURCE_EXHAUSTED'],
    );
    const limited = results[3];
    assert.ok(limited && !limited.ok);
    assert.equal(limited.error.metadata.get('x-velocity-error')[0], 'RATE_LIMITED');
    assert.match(limited.error.details, /RATE_LIMITED/);
    const metrics = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text();
    const calls = (code: string) =>
      Number(new RegExp(`^velocity_grpc_calls_total\\{service="echo",grpc_method="/velocity.test.Echo/Unary",grpc_code="${code}"\\} (\\d+)$`, 'm').exec(metrics)?.[1]);
    assert.equal(calls('OK'), 2);
    assert.equal(calls('RESOURCE_EXHAUSTED'), 2);
    assert.match(metrics, /^velocity_grpc_call_duration_seconds_count\{service="echo",grpc_method="\/velocity.test.Echo\/Unary"\} 4$/m);
  });
});
