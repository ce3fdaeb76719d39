/**
 * TCP (layer 4) services: real line-echo servers on loopback, Velocity
 * in-process, real client sockets. Balancing policies, connect retries and
 * timeouts, PROXY protocol, idle timeout, half-close, isolation, health checks,
 * shutdown and reload.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import type { TestContext } from 'node:test';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import type { Velocity } from '../../src/runtime/instance.ts';
import { listenerAddress } from '../proxy/clients.ts';
import { captureLog } from '../proxy/log-capture.ts';
import { type EchoServer, LineClient, startEcho } from '../proxy/tcp-echo.ts';
import { eventually, startInProcess, stopChild, watchOutput } from '../support/velocity.ts';

// Clients still connected when a test ends would hold the shutdown for shutdown_timeout.
function yaml(servers: readonly (EchoServer | { url: string; weight?: number })[], service = '', top = 'shutdown_timeout: 1s'): string {
  return `
admin: { enabled: false }
${top}
services:
  - name: echo
    mode: tcp
    listen: 127.0.0.1:0
    servers:
${servers.map((s) => `      - { url: "${s.url}"${'weight' in s && s.weight ? `, weight: ${s.weight}` : ''} }`).join('\n')}
${service}
`;
}

const tcpPort = (v: Velocity) => listenerAddress(v, 'tcp').port;

async function connectMany(t: TestContext, port: number, n: number): Promise<LineClient[]> {
  const clients: LineClient[] = [];
  for (let i = 0; i < n; i++) {
    const c = await LineClient.connect(port);
    t.after(() => c.socket.destroy());
    clients.push(c);
  }
  return clients;
}

const nameOf = (reply: string) => reply.slice(0, reply.indexOf(':'));

function tally(names: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = (out[n] ?? 0) + 1;
  return out;
}

test('TCP connections are balanced round robin and carry data both ways', async (t) => {
  const servers = await Promise.all(['e1', 'e2', 'e3'].map((n) => startEcho(t, n)));
  const velocity = await startInProcess(t, yaml(servers));
  const clients = await connectMany(t, tcpPort(velocity), 6);
  const replies = await Promise.all(clients.map((c, i) => c.ask(`line ${i}`)));
  assert.deepEqual(tally(replies.map(nameOf)), { e1: 2, e2: 2, e3: 2 });
  for (const [i, r] of replies.entries()) assert.equal(r.slice(3), `line ${i}`);
  const big = 'x'.repeat(200_000);
  assert.equal((await clients[0]?.ask(big))?.length, big.length + 3, 'a 200 kB line goes through whole');
  // The HTTP router never sees a TCP service: no plain listener was opened for it.
  assert.deepEqual(
    velocity.listeners.map((l) => l.kind),
    ['tcp'],
  );
});

test('weighted round robin and least connections work on TCP connections', async (t) => {
  const heavy = await startEcho(t, 'heavy');
  const light = await startEcho(t, 'light');
  const weighted = await startInProcess(t, yaml([{ url: heavy.url, weight: 2 }, light], '    policy: weighted-round-robin'));
  const wClients = await connectMany(t, tcpPort(weighted), 6);
  const wReplies = await Promise.all(wClients.map((c) => c.ask('w')));
  assert.deepEqual(tally(wReplies.map(nameOf)), { heavy: 4, light: 2 });

  const least = await startInProcess(t, yaml([heavy, light], '    policy: least-connections'));
  const port = tcpPort(least);
  const held = await connectMany(t, port, 4);
  const heldBy = (await Promise.all(held.map((c) => c.ask('h')))).map(nameOf);
  assert.deepEqual(tally(heldBy), { heavy: 2, light: 2 });
  const inFlight = () => (least.dataPlane.service('echo')?.servers ?? []).map((s) => s.inFlight);
  assert.deepEqual(inFlight(), [2, 2]);
  const onLight = held.filter((_c, i) => heldBy[i] === 'light');
  for (const c of onLight) c.socket.end();
  await Promise.all(onLight.map((c) => c.closed));
  await eventually(() => inFlight().join() === '2,0', 5_000, 'closed connections are released');
  const next = await connectMany(t, port, 2);
  assert.deepEqual((await Promise.all(next.map((c) => c.ask('n')))).map(nameOf), ['light', 'light']);
});

test('ip-hash keeps every connection of a client IP on one server, and moves them when that server is taken out', async (t) => {
  const servers = await Promise.all(['h1', 'h2', 'h3'].map((n) => startEcho(t, n)));
  const velocity = await startInProcess(t, yaml(servers, '    policy: ip-hash'));
  const port = tcpPort(velocity);
  const first = await connectMany(t, port, 6);
  const homes = new Set((await Promise.all(first.map((c) => c.ask('a')))).map(nameOf));
  assert.equal(homes.size, 1, 'all connections from 127.0.0.1 land on one server');
  const home = [...homes][0] as string;
  velocity.controlPlane.setAdminState('echo', velocity.dataPlane.service('echo')?.servers[['h1', 'h2', 'h3'].indexOf(home)]?.id as string, 'disabled');
  const moved = await connectMany(t, port, 4);
  const next = new Set((await Promise.all(moved.map((c) => c.ask('b')))).map(nameOf));
  assert.equal(next.size, 1);
  assert.notEqual([...next][0], home, 'the next server on the ring takes them');
});

test('a refused connect is retried on another server: the client never notices', async (t) => {
  const dead = await startEcho(t, 'dead');
  await dead.close();
  const alive = await startEcho(t, 'alive');
  const velocity = await startInProcess(t, yaml([dead, alive]));
  const clients = await connectMany(t, tcpPort(velocity), 6);
  const replies = await Promise.all(clients.map((c) => c.ask('r')));
  assert.deepEqual(tally(replies.map(nameOf)), { alive: 6 });
});

test('a connect that hangs is abandoned after timeouts.connect and retried on another server', async (t) => {
  // A server whose accept queue is full: the kernel drops further SYNs, so connects hang.
  const stuck = spawn(
    process.execPath,
    [
      '-e',
      "const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>{console.log('port',s.address().port);Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0)})",
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => stopChild(stuck, 'SIGKILL'));
  const port = Number((await watchOutput(stuck).waitFor(/port (\d+)/))[1]);
  const fillers = Array.from({ length: 4 }, () => netConnect(port, '127.0.0.1').on('error', () => undefined));
  t.after(() => {
    for (const f of fillers) f.destroy();
  });
  await new Promise((r) => setTimeout(r, 300));
  const alive = await startEcho(t, 'alive');
  const velocity = await startInProcess(t, yaml([{ url: `tcp://127.0.0.1:${port}` }, alive], '    timeouts: { connect: 300ms }'));
  const started = Date.now();
  const clients = await connectMany(t, tcpPort(velocity), 2);
  const replies = await Promise.all(clients.map((c) => c.ask('t', 8_000)));
  assert.deepEqual(replies.map(nameOf), ['alive', 'alive']);
  const took = Date.now() - started;
  assert.ok(took >= 250 && took < 5_000, `one connect waited for the 300ms timeout (${took}ms in all)`);
});

test('when no server can be reached the client connection is closed and the failure logged', async (t) => {
  const dead = await startEcho(t, 'dead');
  await dead.close();
  const log = captureLog();
  const velocity = await startInProcess(t, yaml([dead]), { logger: log.logger });
  const client = await LineClient.connect(tcpPort(velocity));
  await client.closed;
  assert.ok(log.find(/no server could take the TCP connection/).length === 1);
});

for (const version of ['v1', 'v2'] as const) {
  test(`PROXY protocol ${version} tells the server the client's address and port`, async (t) => {
    const server = await startEcho(t, 'pp', { proxyProtocol: true });
    const velocity = await startInProcess(t, yaml([server], `    proxy_protocol: ${version}`));
    const port = tcpPort(velocity);
    const client = await LineClient.connect(port);
    t.after(() => client.socket.destroy());
    assert.equal(await client.ask('who'), `pp:127.0.0.1 ${client.socket.localPort}`);
    assert.equal(await client.ask('plain data after the header'), 'pp:plain data after the header');
    const header = server.headers[0];
    assert.equal(header?.version, version === 'v1' ? 1 : 2);
    assert.equal(header?.destinationAddress, '127.0.0.1');
    assert.equal(header?.destinationPort, port);
  });
}

test('a TCP connection silent past timeouts.tunnel is closed; a busy one stays', async (t) => {
  const server = await startEcho(t, 'e');
  const velocity = await startInProcess(t, yaml([server], '    timeouts: { tunnel: 500ms }'));
  const port = tcpPort(velocity);
  const [quiet, busy] = await connectMany(t, port, 2);
  assert.ok(quiet && busy);
  const started = Date.now();
  while (Date.now() - started < 1_500) {
    assert.equal(await busy.ask('ping'), 'e:ping');
    await new Promise((r) => setTimeout(r, 150));
  }
  await quiet.closed;
  assert.ok(!busy.socket.destroyed);
  await eventually(() => server.open === 1, 3_000, "the server's side of the idle connection is closed too");
});

test("a client's half-close reaches the server, whose last words still reach the client", async (t) => {
  const server = await startEcho(t, 'e');
  const velocity = await startInProcess(t, yaml([server]));
  const client = await LineClient.connect(tcpPort(velocity));
  client.socket.end('last\n');
  assert.equal(await client.next(), 'e:last');
  assert.equal(await client.next(), 'e:bye', 'the server answered after seeing the end of the client stream');
  await client.closed;
  await eventually(() => (velocity.dataPlane.service('echo')?.servers[0]?.inFlight ?? -1) === 0, 3_000, 'released');
});

test('garbage and abrupt resets from one client do not disturb other connections', async (t) => {
  const server = await startEcho(t, 'e');
  const velocity = await startInProcess(t, yaml([server]));
  const port = tcpPort(velocity);
  const steady = await connectMany(t, port, 3);
  const noise = Array.from(
    { length: 10 },
    (_v, i) =>
      new Promise<void>((resolve) => {
        const s = netConnect(port, '127.0.0.1', () => {
          s.write(Buffer.from(Array.from({ length: 64 * 1024 }, (_x, j) => (j * 31 + i) & 0xff)));
          if (i % 2 === 0) s.resetAndDestroy();
          else s.end();
        });
        s.on('error', () => undefined);
        s.resume();
        s.on('close', () => resolve());
      }),
  );
  const talk = steady.map(async (c, i) => {
    for (let n = 0; n < 20; n++) assert.equal(await c.ask(`${i}-${n}`), `e:${i}-${n}`);
  });
  await Promise.all([...noise, ...talk]);
  await eventually(() => (velocity.dataPlane.service('echo')?.servers[0]?.inFlight ?? -1) === 3, 3_000, 'only the 3 steady connections remain counted');
});

test('tcp health checks take a dead server out of the rotation and bring it back', async (t) => {
  const a = await startEcho(t, 'a');
  let b = await startEcho(t, 'b');
  const velocity = await startInProcess(t, yaml([a, b], '    health: { type: tcp, interval: 150ms, timeout: 500ms, unhealthy_threshold: 2, healthy_threshold: 1 }'));
  const servers = () => velocity.dataPlane.service('echo')?.servers ?? [];
  const port = b.port;
  await b.close();
  await eventually(() => servers()[1]?.activeUp === false, 5_000, 'b is marked down');
  const clients = await connectMany(t, tcpPort(velocity), 4);
  assert.deepEqual(tally((await Promise.all(clients.map((c) => c.ask('x')))).map(nameOf)), { a: 4 });
  b = await startEcho(t, 'b', { port });
  await eventually(() => servers()[1]?.activeUp === true, 5_000, 'b is back');
  const more = await connectMany(t, tcpPort(velocity), 4);
  assert.ok((await Promise.all(more.map((c) => c.ask('y')))).map(nameOf).includes('b'));
});

test('shutdown refuses new TCP connections, lets open ones run until shutdown_timeout, then cuts them', async (t) => {
  const server = await startEcho(t, 'e');
  const velocity = await startInProcess(t, yaml([server], '', 'shutdown_timeout: 800ms'));
  const port = tcpPort(velocity);
  const client = await LineClient.connect(port);
  const started = Date.now();
  const closing = velocity.close();
  assert.equal(await client.ask('during shutdown'), 'e:during shutdown');
  await assert.rejects(LineClient.connect(port), /ECONNREFUSED/);
  await closing;
  await client.closed;
  const took = Date.now() - started;
  assert.ok(took >= 700 && took < 4_000, `cut after ${took}ms, expected about 800ms`);
});

test('a reload opens the listener of a new TCP service and drains the one of a removed service', async (t) => {
  const e1 = await startEcho(t, 'e1');
  const e2 = await startEcho(t, 'e2');
  const velocity = await startInProcess(t, yaml([e1]));
  const oldPort = tcpPort(velocity);
  const open = await LineClient.connect(oldPort);
  t.after(() => open.socket.destroy());
  assert.equal(await open.ask('a'), 'e1:a');
  const next = parseConfig(
    `admin: { enabled: false }\nshutdown_timeout: 1s\nservices:\n  - name: other\n    mode: tcp\n    listen: 127.0.0.1:0\n    servers: [${e2.url}]\n`,
    'reload.yaml',
  ).config;
  const result = await velocity.reload(next);
  assert.equal(result.ok, true, JSON.stringify(result.errors));
  const newPort = tcpPort(velocity);
  assert.notEqual(newPort, oldPort);
  const fresh = await LineClient.connect(newPort);
  t.after(() => fresh.socket.destroy());
  assert.equal(await fresh.ask('b'), 'e2:b');
  await assert.rejects(LineClient.connect(oldPort), /ECONNREFUSED/);
  assert.equal(await open.ask('c'), 'e1:c', 'a connection of the removed service drains instead of being cut');
});

test('a reload whose new listener cannot bind is rejected whole: the old config keeps running', async (t) => {
  const e1 = await startEcho(t, 'e1');
  const blocker = await startEcho(t, 'blocker');
  const velocity = await startInProcess(t, yaml([e1]));
  const next = parseConfig(`${yaml([e1])}  - name: extra\n    mode: tcp\n    listen: 127.0.0.1:${blocker.port}\n    servers: [${e1.url}]\n`, 'reload.yaml').config;
  const result = await velocity.reload(next);
  assert.equal(result.ok, false);
  assert.deepEqual(result.errors, [`cannot listen on 127.0.0.1:${blocker.port}: the address is already in use`]);
  assert.deepEqual(
    velocity.config.services.map((s) => s.name),
    ['echo'],
  );
  const client = await LineClient.connect(tcpPort(velocity));
  t.after(() => client.socket.destroy());
  assert.equal(await client.ask('still'), 'e1:still');
});
