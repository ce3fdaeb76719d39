/**
 * gRPC retries through the binary, with real @grpc/grpc-js servers: a call answered
 * UNAVAILABLE, or cut because its server died, is sent to another server only when
 * the config marks its method safe (`grpc.retry_on_unavailable`); any other call
 * gets UNAVAILABLE. Two services take the same method, told apart by a metadata
 * header, one with the method marked safe and one without.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type CallResult, echoClient, type GrpcBackend, grpc, H2C_LISTENER_YAML, startGrpcBackend, unary } from '../support/grpc/index.ts';
import { eventually, startVelocityProcess } from '../support/velocity.ts';

const UNARY = '/velocity.test.Echo/Unary';

const twoServices = (servers: GrpcBackend[]) => {
  const list = servers.map((s) => s.url).join(', ');
  return `${H2C_LISTENER_YAML}  - name: safe
    match: { headers: { x-svc: safe } }
    policy: round-robin
    passive_health: { enabled: false }
    circuit_breaker: { enabled: false }
    retries: { attempts: 3 }
    grpc: { retry_on_unavailable: [ "${UNARY}" ] }
    servers: [ ${list} ]
  - name: unsafe
    policy: round-robin
    passive_health: { enabled: false }
    circuit_breaker: { enabled: false }
    retries: { attempts: 3 }
    servers: [ ${list} ]
`;
};

const safe = () => {
  const md = new grpc.Metadata();
  md.set('x-svc', 'safe');
  return md;
};

const outcome = (r: CallResult) => (r.ok ? `OK from ${r.reply.server}` : grpc.status[r.error.code]);

describe('gRPC retries on UNAVAILABLE through the binary', () => {
  test('a server answering UNAVAILABLE: calls to a method marked safe are all served by the other server; other calls get UNAVAILABLE', async (t) => {
    const [good, unavailable] = await Promise.all([startGrpcBackend(t, 'good'), startGrpcBackend(t, 'down', ['--fail-unary', String(grpc.status.UNAVAILABLE)])]);
    const velocity = await startVelocityProcess(t, twoServices([good, unavailable] as GrpcBackend[]));
    const client = echoClient(t, `127.0.0.1:${velocity.port}`);

    const safeCalls: CallResult[] = [];
    for (let i = 0; i < 10; i++) safeCalls.push(await unary(client, { text: `safe ${i}` }, { metadata: safe() }));
    assert.deepEqual(safeCalls.map(outcome), Array(10).fill('OK from good'), 'every safe call was retried on the good server');

    const otherCalls: CallResult[] = [];
    for (let i = 0; i < 10; i++) otherCalls.push(await unary(client, { text: `other ${i}` }));
    // Round-robin alternates: half the calls meet the server that says UNAVAILABLE, and keep its answer.
    assert.deepEqual(otherCalls.map(outcome).sort(), [...Array(5).fill('OK from good'), ...Array(5).fill('UNAVAILABLE')]);
    const refused = otherCalls.find((r) => !r.ok);
    assert.ok(refused && !refused.ok);
    assert.match(refused.error.details, /asked to fail with 14/, "the server's own status and message reach the client");
  });

  test('a server killed while it holds a call: a call marked safe is answered by another server, any other call gets UNAVAILABLE', async (t) => {
    const backends = await Promise.all(['g1', 'g2', 'g3'].map((name) => startGrpcBackend(t, name, ['--log-calls'])));
    const velocity = await startVelocityProcess(t, twoServices(backends));
    const client = echoClient(t, `127.0.0.1:${velocity.port}`);
    // Warm both services up so the calls below are not the first on their connections.
    assert.ok((await unary(client, { text: 'warm' }, { metadata: safe() })).ok);
    assert.ok((await unary(client, { text: 'warm' })).ok);

    // Each call is held by its server long enough to be killed there (the retried safe call waits as long again).
    const safeCall = unary(client, { text: 'held-safe', delay_ms: 8_000 }, { metadata: safe() });
    const otherCall = unary(client, { text: 'held-other', delay_ms: 8_000 });
    const holderOf = (text: string) => backends.find((b) => b.count(`serves Unary ${text}\n`) > 0);
    await eventually(() => holderOf('held-safe') !== undefined && holderOf('held-other') !== undefined, 60_000, 'both calls reached a server');
    const safeHolder = holderOf('held-safe') as GrpcBackend;
    const otherHolder = holderOf('held-other') as GrpcBackend;
    await Promise.all([...new Set([safeHolder, otherHolder])].map((b) => b.kill()));

    const [safeResult, otherResult] = await Promise.all([safeCall, otherCall]);
    assert.ok(safeResult.ok, `the safe call failed: ${!safeResult.ok && safeResult.error.message}`);
    assert.notEqual(safeResult.reply.server, safeHolder.name, 'answered by a server that was not killed');
    assert.notEqual(safeResult.reply.server, otherHolder.name);
    assert.ok(!otherResult.ok, `the other call was answered by ${otherResult.ok && otherResult.reply.server}`);
    assert.equal(otherResult.error.code, grpc.status.UNAVAILABLE, `got ${otherResult.error.message}`);
  });
});
