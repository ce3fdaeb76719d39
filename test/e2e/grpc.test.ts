/**
 * gRPC through the binary, with real @grpc/grpc-js servers and clients: every
 * call balanced on its own, the four call kinds with a server killed mid-stream,
 * deadlines, the grpc health check, GOAWAY under load, and rate limits as gRPC statuses.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { echoClient, grpc, startGrpcBackends, unary } from '../support/grpc/index.ts';
import { load, startVelocityProcess } from '../support/velocity.ts';

const velocityYaml = (servers: string[], extra = '') => `listeners:
  - type: http
    listen: "127.0.0.1:0"
    http2: true
admin: { enabled: false }
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
