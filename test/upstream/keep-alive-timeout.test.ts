/**
 * How long the upstream pool keeps an idle server connection: a minute by default (nginx's upstream
 * keepalive_timeout), so traffic after a pause of seconds reuses its connections; a second less than
 * the server said when its `Keep-Alive: timeout=N` says it closes sooner (Node and Apache send one),
 * so a request is never sent on a connection the server is closing. The timeout parameter is read by
 * the response parser as a hint only: anything it cannot read counts as no hint.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createServer, type Socket } from 'node:net';
import { type TestContext, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { ResponseHead } from '../../src/upstream/response-parser.ts';
import { parseResponseHead } from '../support/response-head.ts';
import { eventually, startInProcess } from '../support/velocity.ts';

function headOf(lines: string[]): ResponseHead {
  return parseResponseHead(`HTTP/1.1 200 OK\r\n${lines.map((l) => `${l}\r\n`).join('')}content-length: 0\r\n\r\n`);
}

test("the response parser reads a Keep-Alive header's timeout parameter, and nothing it cannot read", () => {
  assert.equal(headOf(['Keep-Alive: timeout=5']).keepAliveTimeoutMs, 5_000);
  assert.equal(headOf(['Connection: keep-alive', 'Keep-Alive: timeout=5, max=100']).keepAliveTimeoutMs, 5_000);
  assert.equal(headOf(['keep-alive: max=100, Timeout=2 ']).keepAliveTimeoutMs, 2_000);
  assert.equal(headOf([]).keepAliveTimeoutMs, -1);
  for (const value of ['max=100', 'timeout=', 'timeout=abc', 'timeout=5s', 'timeout=1234567', 'timeout = 5', 'timeouts=5']) {
    assert.equal(headOf([`Keep-Alive: ${value}`]).keepAliveTimeoutMs, -1, value);
  }
});

/** A backend on a raw socket that answers every GET with `extra` header lines and never closes a connection itself. */
async function startBackend(t: TestContext, extra: string[]): Promise<{ port: number; sockets: Socket[]; ended: () => number }> {
  const sockets: Socket[] = [];
  let ended = 0;
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    socket.on('end', () => {
      ended++;
      socket.end();
    });
    let pending = '';
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        pending = pending.slice(end + 4);
        socket.write(`HTTP/1.1 200 OK\r\n${extra.map((l) => `${l}\r\n`).join('')}content-length: 2\r\n\r\nok`);
      }
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as { port: number }).port, sockets, ended: () => ended };
}

function get(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

async function proxyTo(t: TestContext, backendPort: number): Promise<number> {
  const velocity = await startInProcess(t, `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: [http://127.0.0.1:${backendPort}]\n`);
  return velocity.address.port;
}

test('a server connection idle for seconds is reused when the server gave no keep-alive timeout', async (t) => {
  const backend = await startBackend(t, []);
  const port = await proxyTo(t, backend.port);
  assert.equal(await get(port), 200);
  // Past the 4 s the pool once kept idle connections: a pause this long must not cost a new connection.
  await delay(5_500);
  assert.equal(await get(port), 200);
  assert.equal(backend.sockets.length, 1);
  assert.equal(backend.ended(), 0);
});

test("an idle server connection is closed before the server's announced keep-alive timeout, and the next request gets a new one", async (t) => {
  const backend = await startBackend(t, ['Keep-Alive: timeout=2']);
  const port = await proxyTo(t, backend.port);
  assert.equal(await get(port), 200);
  // The backend never closes by itself: an end it sees is the pool letting go (a second before the 2 s it announced).
  await eventually(() => backend.ended() === 1, 30_000, 'the pool closes the idle connection the server said it keeps 2 s');
  assert.equal(await get(port), 200);
  assert.equal(backend.sockets.length, 2);
});
