/**
 * bench/raw-floor.ts, the benchmark's reference proxy, in both of its socket I/O modes (net's, and with
 * `--direct` Velocity's own from dist/, its writes held to the turn's end or with `--at-once` not): keep-alive GETs go round robin to the upstreams, and a request
 * head or a response that comes in two reads is put together (the direct mode copies such a part out
 * of a read buffer the next read overwrites). No timing is asserted.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePort, waitPort } from '../bench/lib.ts';

const script = fileURLToPath(new URL('../bench/raw-floor.ts', import.meta.url));
const LONG_TAIL = '.'.repeat(300);

/**
 * An upstream answering `NAME PATH` per request head. A path of /split is answered head first, and 30 ms
 * later a body longer than the head (the second read overwrites all of the first in a reused read buffer).
 */
async function upstream(name: string, heads: string[]): Promise<Server> {
  const server = createServer((socket) => {
    let pending = '';
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        heads.push(head);
        const path = head.split(' ')[1];
        const body = `${name} ${path}${path === '/split' ? LONG_TAIL : ''}`;
        const responseHead = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`;
        if (head.startsWith('GET /split ')) {
          socket.write(responseHead);
          setTimeout(() => socket.write(body), 30);
        } else socket.write(responseHead + body);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

/** Sends `parts` (with a pause between them) and resolves with the response body once it is whole. */
async function exchange(socket: Socket, parts: string[]): Promise<string> {
  let received = '';
  const whole = new Promise<string>((resolve) => {
    const onData = (chunk: Buffer): void => {
      received += chunk.toString('latin1');
      const end = received.indexOf('\r\n\r\n');
      const length = Number(/content-length: *(\d+)/i.exec(received)?.[1] ?? -1);
      if (end < 0 || length < 0 || received.length < end + 4 + length) return;
      socket.removeListener('data', onData);
      resolve(received.slice(end + 4));
    };
    socket.on('data', onData);
  });
  for (const [i, part] of parts.entries()) {
    if (i > 0) await sleep(30);
    socket.write(part);
  }
  return whole;
}

for (const mode of [[], ['--direct'], ['--direct', '--at-once']]) {
  test(`the raw floor${mode.length ? ` ${mode.join(' ')}` : ''} proxies keep-alive GETs round robin, heads and responses in two reads too`, { timeout: 30_000 }, async (t) => {
    const heads: string[] = [];
    const upstreams = [await upstream('a', heads), await upstream('b', heads)];
    const port = await freePort();
    const urls = upstreams.map((u) => `http://127.0.0.1:${(u.address() as AddressInfo).port}`);
    let stderr = '';
    const floor: ChildProcess = spawn(process.execPath, [script, ...mode, String(port), ...urls], { stdio: ['ignore', 'ignore', 'pipe'] });
    floor.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk;
    });
    t.after(() => {
      floor.kill();
      for (const u of upstreams) u.close();
    });
    await waitPort(port, 30_000);
    const client = connect(port, '127.0.0.1');
    t.after(() => client.destroy());
    await once(client, 'connect');

    assert.equal(await exchange(client, ['GET /one HTTP/1.1\r\nhost: x\r\n\r\n']), 'a /one');
    assert.equal(await exchange(client, ['GET /two HTTP/1.1\r\nho', 'st: x\r\n\r\n']), 'b /two');
    assert.equal(await exchange(client, ['GET /split HTTP/1.1\r\nhost: x\r\n\r\n']), `a /split${LONG_TAIL}`);
    assert.equal(await exchange(client, ['GET /four HTTP/1.1\r\nhost: x\r\n\r\n']), 'b /four');
    assert.equal(heads.length, 4);
    for (const head of heads) assert.match(head, /\r\nx-forwarded-for: 127\.0\.0\.1$/);
    assert.equal(floor.exitCode, null, stderr);
  });
}
