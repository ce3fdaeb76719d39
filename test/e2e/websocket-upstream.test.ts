/**
 * The WebSocket upgrade toward the server on Velocity's own parts (src/upstream/upgrade-request.ts): a
 * socket of its own, the head written as given, the answer read by Velocity's response parser — not
 * node:http's client. Scripted servers on raw sockets say exactly what they send and show what they got.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import type { RequestRecord } from '../../src/observe/events.ts';
import { certDir, createCa, issueCert } from '../support/certs.ts';
import { startSilentServer } from '../support/silent-server.ts';
import { type Cleanup, eventually, startApp, startInProcess } from '../support/velocity.ts';

const ANSWER_101 = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n';

/** A server on a raw socket: `answer` is called with each connection's request head once it has all come. */
async function startScripted(
  t: Cleanup,
  answer: (socket: Socket, head: string) => void,
  listen: (onSocket: (s: Socket) => void) => Server = createServer,
): Promise<{ port: number; heads: string[] }> {
  const heads: string[] = [];
  const sockets = new Set<Socket>();
  const server = listen((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    let got = '';
    const onData = (chunk: Buffer) => {
      got += chunk.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.removeListener('data', onData);
      heads.push(got.slice(0, end + 4));
      const rest = got.slice(end + 4);
      answer(socket, got.slice(0, end + 4));
      if (rest) socket.emit('data', Buffer.from(rest, 'latin1'));
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as { port: number }).port, heads };
}

/** Answers 101 with `early` in the same write, then echoes. */
const switchAndEcho = (early: string) => (socket: Socket) => {
  socket.write(ANSWER_101 + early);
  socket.on('data', (chunk) => socket.write(chunk));
};

/** A raw client: sends `head`, collects what comes back as latin1. */
function rawClient(t: Cleanup, port: number, head: string): { socket: Socket; received: () => string } {
  const socket = connect(port, '127.0.0.1');
  t.after(() => socket.destroy());
  let got = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    got += chunk;
  });
  socket.on('error', () => undefined);
  socket.write(head);
  return { socket, received: () => got };
}

const UPGRADE = (path = '/chat') =>
  `GET ${path} HTTP/1.1\r\nHost: chat.test\r\nX-Mixed-Case: Kept As Sent\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

const QUIET = 'passive_health: { enabled: false }\ncircuit_breaker: { enabled: false }\n';

test("the upgrade reaches the server as Velocity wrote it, not through node:http's client, and the bytes after the server's 101 reach the client", async (t) => {
  const server = await startScripted(t, switchAndEcho('EARLY'));
  const velocity = await startApp(t, `servers: [ "http://127.0.0.1:${server.port}" ]\n${QUIET}`);
  let clientRequests = 0;
  const end = http.ClientRequest.prototype.end;
  http.ClientRequest.prototype.end = function (this: http.ClientRequest, ...args: unknown[]) {
    clientRequests++;
    return (end as (...a: unknown[]) => http.ClientRequest).apply(this, args);
  } as typeof end;
  t.after(() => {
    http.ClientRequest.prototype.end = end;
  });

  const client = rawClient(t, velocity.address.port, UPGRADE('/chat?room=1'));
  await eventually(() => client.received().includes('\r\n\r\nEARLY'), 30_000, "the 101 and the server's early bytes");
  const [head] = client.received().split('\r\n\r\n');
  assert.match(head as string, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(head as string, /\r\nUpgrade: websocket(\r\n|$)/);
  assert.match(head as string, /\r\nConnection: Upgrade(\r\n|$)/);
  assert.match(head as string, /\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=(\r\n|$)/);
  client.socket.write('ping');
  await eventually(() => client.received().endsWith('EARLYping'), 30_000, 'the echo through the tunnel');

  const lines = (server.heads[0] as string).split('\r\n').slice(0, -2);
  assert.equal(lines[0], 'GET /chat?room=1 HTTP/1.1');
  const names = lines.slice(1).map((l) => l.slice(0, l.indexOf(':')));
  assert.deepEqual(names, [
    'Host',
    'X-Mixed-Case',
    'Sec-WebSocket-Version',
    'Sec-WebSocket-Key',
    'x-forwarded-for',
    'x-forwarded-proto',
    'x-forwarded-host',
    'x-request-id',
    'connection',
    'upgrade',
  ]);
  assert.ok(lines.includes('X-Mixed-Case: Kept As Sent'));
  assert.equal(clientRequests, 0, "node:http's client made no request");
});

test("a server's refusal is relayed whole, with a chunked body and with one that ends when the server closes", async (t) => {
  const chunked = await startScripted(t, (socket) => {
    socket.write('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    setImmediate(() => socket.end('6\r\n world\r\n0\r\n\r\n'));
  });
  const untilClose = await startScripted(t, (socket) => {
    socket.write('HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nlog in ');
    setImmediate(() => socket.end('first'));
  });
  for (const [server, status, body] of [
    [chunked, 403, 'hello world'],
    [untilClose, 401, 'log in first'],
  ] as const) {
    const velocity = await startApp(t, `servers: [ "http://127.0.0.1:${server.port}" ]\n${QUIET}`);
    const records: RequestRecord[] = [];
    velocity.observe((r) => records.push(r));
    const client = rawClient(t, velocity.address.port, UPGRADE());
    await eventually(() => client.socket.readableEnded || client.socket.destroyed, 30_000, 'the refusal ended');
    const parsed = parseResponse(client.received());
    assert.equal(parsed.status, status);
    assert.equal(parsed.body, body, `the ${status}'s body, whole`);
    await eventually(() => records.length === 1, 30_000, 'the record');
    assert.equal(records[0]?.status, status);
  }
});

test('a server that does not answer the upgrade within timeouts.response_header gets the client a 504', async (t) => {
  const silent = await startSilentServer(t);
  const velocity = await startApp(t, `servers: [ "http://127.0.0.1:${silent}" ]\ntimeouts: { response_header: 300ms }\n${QUIET}`);
  const client = rawClient(t, velocity.address.port, UPGRADE());
  await eventually(() => client.received().includes('\r\n\r\n'), 30_000, 'the answer');
  assert.match(client.received(), /^HTTP\/1\.1 504 /);
  assert.match(client.received(), /x-velocity-error: UPSTREAM_TIMEOUT/i);
});

test('a server that closes after reading the upgrade gets the client a 502, and the upgrade is not sent to another server', async (t) => {
  const closing = await startScripted(t, (socket) => socket.destroy());
  const other = await startScripted(t, switchAndEcho(''));
  const velocity = await startApp(t, `policy: round-robin\nservers: [ "http://127.0.0.1:${closing.port}", "http://127.0.0.1:${other.port}" ]\nretries: { attempts: 3 }\n${QUIET}`);
  const client = rawClient(t, velocity.address.port, UPGRADE());
  await eventually(() => client.received().includes('\r\n\r\n'), 30_000, 'the answer');
  assert.match(client.received(), /^HTTP\/1\.1 502 /);
  assert.equal(closing.heads.length, 1);
  assert.equal(other.heads.length, 0, 'an upgrade that reached a server is not sent again');
});

test('an https:// server is upgraded over TLS, its certificate checked', async (t) => {
  const dir = certDir(t);
  const ca = createCa(dir);
  const cert = issueCert(ca, ['localhost', '127.0.0.1']);
  const server = await startScripted(t, switchAndEcho(''), (onSocket) =>
    createTlsServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key), ALPNProtocols: ['http/1.1'] }, onSocket),
  );
  const velocity = await startApp(t, `servers: [ "https://127.0.0.1:${server.port}" ]\ntls: { ca: "${ca.cert}" }\n${QUIET}`);
  const client = rawClient(t, velocity.address.port, UPGRADE());
  await eventually(() => client.received().includes('\r\n\r\n'), 30_000, 'the 101');
  assert.match(client.received(), /^HTTP\/1\.1 101 /);
  client.socket.write('over tls');
  await eventually(() => client.received().endsWith('over tls'), 30_000, 'the echo through the tunnel');
});

test('a client that half-closes before the server answers gives the upgrade up (client.abort_on_close); with it off the client gets the 101', async (t) => {
  // The server answers a second after the upgrade reached it: long after the client's FIN reached Velocity.
  const server = await startScripted(t, (socket) => {
    const timer = setTimeout(() => socket.write(ANSWER_101), 1_000);
    socket.once('close', () => clearTimeout(timer));
  });
  for (const abortOnClose of [true, false]) {
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nshutdown_timeout: 1s\nclient: { abort_on_close: ${abortOnClose} }\nservices:\n  - name: chat\n    servers: [ "http://127.0.0.1:${server.port}" ]\n    passive_health: { enabled: false }\n`,
    );
    const upstream = velocity.dataPlane.service('chat')?.servers[0];
    assert.ok(upstream);
    const client = rawClient(t, velocity.address.port, UPGRADE());
    let closed = false;
    client.socket.once('close', () => {
      closed = true;
    });
    await eventually(() => upstream.inFlight === 1, 30_000, 'the upgrade in flight');
    client.socket.end();
    if (abortOnClose) {
      await eventually(() => upstream.inFlight === 0 && closed, 30_000, 'the upgrade given up and the client closed');
      assert.equal(client.received(), '', 'nothing answered to a client that left');
    } else {
      await eventually(() => client.received().includes('\r\n\r\n'), 30_000, 'the 101 to the half-closed client');
      assert.match(client.received(), /^HTTP\/1\.1 101 /);
    }
  }
});

/** Status and body of an HTTP/1.1 response as received (chunked decoded). */
function parseResponse(text: string): { status: number; body: string } {
  const end = text.indexOf('\r\n\r\n');
  const head = text.slice(0, end);
  let body = text.slice(end + 4);
  if (/\r\ntransfer-encoding: chunked/i.test(head)) {
    let out = '';
    for (let at = 0; ; ) {
      const lineEnd = body.indexOf('\r\n', at);
      const size = Number.parseInt(body.slice(at, lineEnd), 16);
      if (!size) break;
      out += body.slice(lineEnd + 2, lineEnd + 2 + size);
      at = lineEnd + 2 + size + 2;
    }
    body = out;
  }
  return { status: Number(head.slice(9, 12)), body };
}
