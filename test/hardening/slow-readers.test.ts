/**
 * #22 point 5: a client that reads slowly (or not at all) makes Velocity pause
 * the server, not buffer its response: what Velocity holds per slow-reading
 * connection stays under a cap, whatever the response size. Measured as the
 * live Buffer memory of this process (Velocity in process; the server and the
 * slow clients are other processes), after a GC, once every transfer stalled.
 * Bounded: 20 connections, a wait of at most 60 s, everything on loopback. Without the pause
 * (a forwarder that writes whatever the server sends) each connection holds megabytes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { delay, startBackendProcess, startInProcess, stopChild } from '../support/velocity.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Live Buffer/ArrayBuffer bytes of this process after a full GC. */
function liveBuffers(): number {
  gc();
  return process.memoryUsage().arrayBuffers;
}

/** Opens `count` connections that each ask for `bytes` and never read; prints "ready" once all are sent. */
const SLOW_READERS = `
const net = require('node:net');
const [port, count, bytes] = process.argv.slice(1).map(Number);
let sent = 0;
for (let i = 0; i < count; i++) {
  const s = net.connect(port, '127.0.0.1', () => {
    s.write('GET /bytes/' + bytes + ' HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n');
    s.pause();
    if (++sent === count) console.log('ready');
  });
  s.on('error', () => {});
}
setInterval(() => {}, 1000);
`;

/**
 * Per connection, at most this stays in Velocity once a transfer stalled: the write pending to the
 * client, which is one 16 KiB upstream read (its socket's high-water mark is 16 KiB), and the small
 * buffer a paused server connection waits with — never the response. Measured 16–17 KiB; it was
 * ~125 KiB with Node's own 64 KiB reads and stream buffering, ~190 KiB with undici.
 */
const CAP_PER_CONNECTION = 40 * 1024;

test('slow readers: the server is paused, and what Velocity buffers per connection stays under a cap', async (t) => {
  const backend = await startBackendProcess(t, 'big');
  const velocity = await startInProcess(
    t,
    `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: big\n    servers: [${backend.url}]\n    timeouts: { idle: 5m }\n`,
  );
  // One whole response first, so what the first request allocates once (pools, tables) is in the base.
  await (await fetch(`http://127.0.0.1:${velocity.address.port}/bytes/${256 * 1024}`)).arrayBuffer();
  const base = liveBuffers();
  const count = 20;
  const clients = spawn(process.execPath, ['-e', SLOW_READERS, String(velocity.address.port), String(count), String(16 * 1024 * 1024)], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => stopChild(clients, 'SIGKILL'));
  await new Promise<void>((resolve) => clients.stdout?.once('data', () => resolve()));
  // Wait until the transfers stalled (kernel buffers full on both sides): the live buffers stop changing.
  let last = -1;
  let held = 0;
  for (let i = 0; i < 120; i++) {
    await delay(500);
    held = liveBuffers() - base;
    if (last >= 0 && Math.abs(held - last) < 16 * 1024) break;
    last = held;
  }
  const perConnection = held / count;
  t.diagnostic(`Velocity holds ${(perConnection / 1024).toFixed(1)} KiB per slow-reading connection`);
  assert.ok(perConnection < CAP_PER_CONNECTION, `${(perConnection / 1024).toFixed(1)} KiB per slow reader ≤ ${CAP_PER_CONNECTION / 1024} KiB`);
});
