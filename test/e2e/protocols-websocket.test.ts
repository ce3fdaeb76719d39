/**
 * WebSocket through Velocity: real `ws` clients, real `ws` echo backends on
 * loopback, Velocity in-process. Balancing, in-flight counting, reload, idle
 * timeout, retries and shutdown.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import type WebSocket from 'ws';
import { parseConfig } from '../../src/config/load.ts';
import type { Velocity } from '../../src/runtime/instance.ts';
import { closed, exchange, openWs, servedBy, UnexpectedResponse } from '../proxy/ws-client.ts';
import { eventually, startBackendProcess, startInProcess } from '../support/velocity.ts';
import { startWsEcho, type WsEchoBackend } from '../support/ws-echo.ts';

function yaml(backends: readonly { url: string }[], service = '', top = ''): string {
  return `
listen: 127.0.0.1:0
admin: { enabled: false }
${top}
services:
  - name: chat
    servers: [${backends.map((b) => b.url).join(', ')}]
${service}
`;
}

const wsUrl = (v: Velocity, path = '/chat') => `ws://127.0.0.1:${v.address.port}${path}`;

function counts(replies: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of replies) out[servedBy(r)] = (out[servedBy(r)] ?? 0) + 1;
  return out;
}

function inFlight(v: Velocity): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of v.dataPlane.service('chat')?.servers ?? []) out[s.id] = s.inFlight;
  return out;
}

async function openMany(t: { after(fn: () => void): void }, url: string, n: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  for (let i = 0; i < n; i++) {
    const ws = await openWs(url);
    t.after(() => ws.terminate());
    sockets.push(ws);
  }
  return sockets;
}

test('WebSocket clients exchange messages with the backends, spread round robin, with forwarding headers', async (t) => {
  const backends = await Promise.all(['w1', 'w2', 'w3'].map((n) => startWsEcho(t, n)));
  const velocity = await startInProcess(t, yaml(backends));
  const sockets = await openMany(t, wsUrl(velocity), 6);
  const replies = await Promise.all(sockets.map((ws, i) => exchange(ws, `hello ${i}`)));
  assert.deepEqual(counts(replies), { w1: 2, w2: 2, w3: 2 });
  for (const [i, r] of replies.entries()) assert.equal(r.slice(3), `hello ${i}`);
  // A second round on the same sockets stays with the same backends.
  const again = await Promise.all(sockets.map((ws, i) => exchange(ws, `again ${i}`)));
  assert.deepEqual(again.map(servedBy), replies.map(servedBy));
  const seen = backends.flatMap((b) => b.upgrades);
  assert.equal(seen.length, 6);
  for (const h of seen) {
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h.upgrade, 'websocket');
    assert.ok(h['sec-websocket-key']);
    assert.ok(h['x-request-id']);
  }
});

test('least-connections counts open WebSockets: new ones go where fewer are open, and closing releases them', async (t) => {
  const backends = await Promise.all(['w1', 'w2'].map((n) => startWsEcho(t, n)));
  const velocity = await startInProcess(t, yaml(backends, '    policy: least-connections'));
  const first = await openMany(t, wsUrl(velocity), 4);
  const firstBy = (await Promise.all(first.map((ws) => exchange(ws, 'x')))).map(servedBy);
  assert.deepEqual(counts(firstBy.map((n) => `${n}:`)), { w1: 2, w2: 2 });
  assert.deepEqual(Object.values(inFlight(velocity)), [2, 2]);
  // Close both tunnels on w1: the next two connections must go to w1.
  const onW1 = first.filter((_ws, i) => firstBy[i] === 'w1');
  for (const ws of onW1) ws.close();
  await Promise.all(onW1.map(closed));
  await eventually(() => Object.values(inFlight(velocity)).join() === '0,2', 5_000, 'tunnels on w1 released');
  const next = await openMany(t, wsUrl(velocity), 2);
  const nextBy = (await Promise.all(next.map((ws) => exchange(ws, 'y')))).map(servedBy);
  assert.deepEqual(nextBy, ['w1', 'w1']);
  assert.deepEqual(Object.values(inFlight(velocity)), [2, 2]);
});

test('an open WebSocket survives a config reload; new ones follow the new config', async (t) => {
  const w1 = await startWsEcho(t, 'w1');
  const w2 = await startWsEcho(t, 'w2');
  const velocity = await startInProcess(t, yaml([w1]));
  const old = await openWs(wsUrl(velocity));
  t.after(() => old.terminate());
  assert.equal(await exchange(old, 'before'), 'w1:before');
  const { config } = parseConfig(yaml([w2]), 'reloaded.yaml');
  const result = await velocity.reload(config);
  assert.equal(result.ok, true, JSON.stringify(result.errors));
  assert.equal(await exchange(old, 'after'), 'w1:after', 'the tunnel opened before the reload goes on');
  const fresh = await openWs(wsUrl(velocity));
  t.after(() => fresh.terminate());
  assert.equal(await exchange(fresh, 'new'), 'w2:new');
  // w1 was removed from the config: it drains while its tunnel is open, and goes once it closes.
  assert.ok(
    velocity.controlPlane.servers('chat').some((s) => s.spec.url === w1.url),
    'w1 drains, not dropped',
  );
  old.close();
  await closed(old);
  await eventually(() => !velocity.controlPlane.servers('chat').some((s) => s.spec.url === w1.url), 5_000, 'w1 removed after its last tunnel closed');
});

test('a WebSocket silent past timeouts.tunnel is closed; one with traffic stays open', async (t) => {
  const backend = await startWsEcho(t, 'w1');
  const velocity = await startInProcess(t, yaml([backend], '    timeouts: { tunnel: 600ms }'));
  const quiet = await openWs(wsUrl(velocity));
  const busy = await openWs(wsUrl(velocity));
  t.after(() => {
    quiet.terminate();
    busy.terminate();
  });
  const quietClosed = closed(quiet);
  const started = Date.now();
  while (Date.now() - started < 1_800) {
    assert.equal(await exchange(busy, 'ping'), 'w1:ping');
    await new Promise((r) => setTimeout(r, 200));
  }
  await quietClosed;
  assert.equal(busy.readyState, busy.OPEN);
  await eventually(() => backend.open === 1, 3_000, 'the backend side of the idle tunnel is closed too');
  assert.deepEqual(Object.values(inFlight(velocity)), [1]);
});

test('a WebSocket outlives the client header and body timeouts of the HTTP listener', async (t) => {
  const backend = await startWsEcho(t, 'w1');
  const velocity = await startInProcess(t, yaml([backend], '', 'client: { header_timeout: 300ms, body_timeout: 400ms, keepalive_timeout: 300ms }'));
  const ws = await openWs(wsUrl(velocity));
  t.after(() => ws.terminate());
  await new Promise((r) => setTimeout(r, 1_500));
  assert.equal(await exchange(ws, 'still here'), 'w1:still here');
});

test('shutdown stops new upgrades, lets open WebSockets run until shutdown_timeout, then cuts them', async (t) => {
  const backend = await startWsEcho(t, 'w1');
  const velocity = await startInProcess(t, yaml([backend], '', 'shutdown_timeout: 1200ms'));
  const url = wsUrl(velocity);
  const ws = await openWs(url);
  t.after(() => ws.terminate());
  const wsClosed = closed(ws);
  const started = Date.now();
  const closing = velocity.close();
  assert.equal(await exchange(ws, 'during shutdown'), 'w1:during shutdown');
  await assert.rejects(openWs(url), /ECONNREFUSED/);
  await closing;
  await wsClosed;
  const took = Date.now() - started;
  assert.ok(took >= 1_000 && took < 5_000, `closed after ${took}ms, expected about shutdown_timeout (1.2 s)`);
  assert.deepEqual(Object.values(inFlight(velocity)), [0]);
});

test('a failed connect is retried on another server; when none answers the client gets 502', async (t) => {
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const deadUrl = `http://127.0.0.1:${(dead.address() as { port: number }).port}`;
  await new Promise<void>((r) => dead.close(() => r()));
  const alive = await startWsEcho(t, 'alive');
  const velocity = await startInProcess(t, yaml([{ url: deadUrl }, alive], '    passive_health: { enabled: false }\n    circuit_breaker: { enabled: false }'));
  const sockets = await openMany(t, wsUrl(velocity), 4);
  const replies = await Promise.all(sockets.map((ws) => exchange(ws, 'x')));
  assert.deepEqual(counts(replies), { alive: 4 });
  const onlyDead = await startInProcess(t, yaml([{ url: deadUrl }]));
  await assert.rejects(
    openWs(wsUrl(onlyDead)),
    (err: unknown) => err instanceof UnexpectedResponse && err.status === 502 && err.headers['x-velocity-error'] === 'UPSTREAM_CONNECT_FAILED',
  );
});

test("a server's refusal of the upgrade is passed to the client, and routing errors answer the upgrade", async (t) => {
  // A plain `velocity backend` has no WebSocket support: it answers the upgrade request as a normal GET.
  const plain = await startBackendProcess(t, 'plain');
  const velocity = await startInProcess(t, yaml([plain], '    hosts: [chat.test]'));
  await assert.rejects(openWs(wsUrl(velocity), { headers: { host: 'chat.test' } }), (err: unknown) => err instanceof UnexpectedResponse && err.status === 200);
  await assert.rejects(openWs(wsUrl(velocity), { headers: { host: 'other.test' } }), (err: unknown) => err instanceof UnexpectedResponse && err.status === 404);
  assert.deepEqual(Object.values(inFlight(velocity)), [0], 'a refused upgrade releases its server');
});

test('websocket: false sends the request on as plain HTTP without the Upgrade header', async (t) => {
  const backend: WsEchoBackend = await startWsEcho(t, 'w1');
  const velocity = await startInProcess(t, yaml([backend], '    websocket: false'));
  await assert.rejects(openWs(wsUrl(velocity)), (err: unknown) => err instanceof UnexpectedResponse && err.status === 200);
  assert.equal(backend.upgrades.length, 0);
});
