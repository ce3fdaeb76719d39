/**
 * Slow and abusive clients: slowloris heads and slow bodies are cut at the
 * configured timeouts, idle connections are capped without starving active
 * ones, and a slow reader of a big response does not make Velocity buffer it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { delay, eventually, get, startBackendProcess, startInProcess, startVelocityProcess, testAgent } from '../support/velocity.ts';
import { rawExchange, startRawBackend } from './raw-http.ts';

const yaml = (backendUrl: string, client: string) => `listen: "127.0.0.1:0"
admin: { enabled: false }
client: { ${client} }
services:
  - name: app
    servers: [${backendUrl}]
`;

test('slowloris: a head trickled one header at a time is cut at client.header_timeout with 408 or a close, and never forwarded', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, yaml(backend.url, 'header_timeout: 1s'));
  const started = Date.now();
  // 40 header lines, 250 ms apart: 10 s if nobody cut it.
  const chunks = ['GET /slow HTTP/1.1\r\nHost: a\r\n', ...Array.from({ length: 40 }, (_, i) => `X-Drip-${i}: ${i}\r\n`), '\r\n'];
  const seen = await rawExchange(velocity.address.port, chunks, { gapMs: 250, quietMs: 5_000, maxMs: 15_000 });
  const elapsed = Date.now() - started;
  assert.ok(seen.closed, 'the connection was closed');
  assert.ok(seen.statuses.length === 0 || seen.statuses[0] === 408, `408 or nothing, got ${JSON.stringify(seen.text.slice(0, 200))}`);
  assert.ok(elapsed < 8_000, `cut after ${elapsed} ms, well before the 10 s trickle ended`);
  assert.equal(backend.requests.length, 0);
});

test('slow body: a request body trickled byte by byte is cut at client.body_timeout', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, yaml(backend.url, 'header_timeout: 1s, body_timeout: 2s'));
  const started = Date.now();
  const chunks = ['POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 60\r\n\r\n', ...Array.from({ length: 60 }, () => 'x')];
  const seen = await rawExchange(velocity.address.port, chunks, { gapMs: 200, quietMs: 5_000, maxMs: 20_000 });
  const elapsed = Date.now() - started;
  assert.ok(seen.closed, 'the connection was closed');
  assert.ok(seen.statuses.length === 0 || seen.statuses[0] === 408, `408 or nothing, got ${JSON.stringify(seen.text.slice(0, 200))}`);
  assert.ok(elapsed < 10_000, `cut after ${elapsed} ms, before the 12 s trickle ended`);
  // The body was small enough to buffer, so the server never saw a partial request either.
  assert.equal(backend.requests.length, 0);
});

test('client.max_connections caps idle connections; idle ones are cut at header_timeout and active clients are served again', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, yaml(backend.url, 'header_timeout: 1500ms, keepalive_timeout: 1s, max_connections: 20'));
  const port = velocity.address.port;
  const idle: Socket[] = [];
  const closed = new Set<Socket>();
  t.after(() => {
    for (const s of idle) s.destroy();
  });
  for (let i = 0; i < 30; i++) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    s.on('close', () => closed.add(s));
    idle.push(s);
    await new Promise((r) => s.once('connect', r));
  }
  // The 10 over the cap are closed at once.
  await eventually(() => closed.size >= 10, 3_000, 'connections over max_connections are closed');
  const early = closed.size;
  assert.ok(early <= 12, `only the excess is closed at once (${early})`);
  // The idle ones that were let in sent nothing: cut at header_timeout, which frees the slots.
  await eventually(() => closed.size === 30, 8_000, 'idle connections are cut at header_timeout').catch((err: Error) => {
    throw new Error(`${err.message} (${closed.size} of 30 closed)`);
  });
  const agent = testAgent(t);
  const answers = await Promise.all(Array.from({ length: 10 }, () => get(agent, `http://127.0.0.1:${port}/active`)));
  assert.deepEqual(
    answers.map((a) => a.status),
    Array(10).fill(200),
  );
});

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

test('a slow reader of a 1 GB response does not make Velocity buffer it: RSS grows by far less than the body (backpressure)', async (t) => {
  const backend = await startBackendProcess(t, 'big');
  const velocity = await startVelocityProcess(
    t,
    `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    timeouts: { idle: 60s }
    servers: [${backend.url}]
`,
  );
  const pid = velocity.child.pid as number;
  // Warm up so the baseline includes the first request's allocations.
  await get(testAgent(t), `${velocity.url}/bytes/1048576`);
  const baseline = rssBytes(pid);
  const total = 1024 * 1024 * 1024;
  const samples: number[] = [];
  const sampler = setInterval(() => samples.push(rssBytes(pid)), 200);
  t.after(() => clearInterval(sampler));
  let received = 0;
  await new Promise<void>((resolve, reject) => {
    const socket = connect(velocity.port, '127.0.0.1');
    socket.on('connect', () => socket.write(`GET /bytes/${total} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`));
    // Read ~64 MB/s: paused most of the time, while the backend could send at several hundred MB/s.
    const reader = setInterval(() => {
      socket.resume();
      setTimeout(() => socket.pause(), 5);
    }, 20);
    socket.on('data', (b: Buffer) => {
      received += b.length;
    });
    socket.on('error', reject);
    socket.on('close', () => {
      clearInterval(reader);
      resolve();
    });
  });
  clearInterval(sampler);
  samples.push(rssBytes(pid));
  const growth = Math.max(...samples) - baseline;
  t.diagnostic(
    `received ${(received / 2 ** 20).toFixed(0)} MB, baseline RSS ${(baseline / 2 ** 20).toFixed(0)} MB, peak growth ${(growth / 2 ** 20).toFixed(1)} MB over ${samples.length} samples`,
  );
  assert.ok(received > total, 'the whole body arrived');
  assert.ok(growth < 150 * 2 ** 20, `RSS grew by ${(growth / 2 ** 20).toFixed(0)} MB while streaming 1 GB`);
  await delay(0);
});
