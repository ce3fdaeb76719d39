/**
 * #22 point 5: a client that reads slowly (or not at all) makes Velocity pause
 * the server, not buffer its response: what Velocity holds per slow-reading
 * connection stays under a cap, whatever the response size. Measured as the
 * live Buffer memory of this process (Velocity in process; the server and the
 * slow clients are other processes), after a GC, once every transfer stalled (the
 * backend's byte count stops moving). Bounded: 20 connections, a wait of at most 60 s, everything on loopback. Without the pause
 * (a forwarder that writes whatever the server sends) each connection holds megabytes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { liveBuffers } from '../support/retained.ts';
import { eventually, startBackendProcess, startInProcess, stopChild, untilSteady } from '../support/velocity.ts';

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

/** GET /bytes/N over a connection that closes after it, read to the end. */
function wholeResponse(port: number, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(`GET /bytes/${bytes} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`));
    socket.on('data', () => undefined);
    socket.once('close', () => resolve());
    socket.once('error', reject);
  });
}

test('slow readers: the server is paused, and what Velocity buffers per connection stays under a cap', async (t) => {
  const backend = await startBackendProcess(t, 'big');
  const velocity = await startInProcess(
    t,
    `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: big\n    servers: [${backend.url}]\n    timeouts: { idle: 5m }\n`,
  );
  // One whole response first, so what the first request allocates once (pools, tables) is in the base;
  // on a connection that then closes, so its buffers are not in the base only to be freed later.
  await wholeResponse(velocity.address.port, 256 * 1024);
  const base = await liveBuffers();
  const count = 20;
  const clients = spawn(process.execPath, ['-e', SLOW_READERS, String(velocity.address.port), String(count), String(16 * 1024 * 1024)], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => stopChild(clients, 'SIGKILL'));
  await new Promise<void>((resolve) => clients.stdout?.once('data', () => resolve()));
  // Wait until the transfers stalled: all of them under way at the backend, its byte count unchanged over a second.
  const asking = new Agent();
  const transfers = async () => (await (await request(`${backend.url}/_count`, { dispatcher: asking })).body.json()) as { bytes_sent: number; streaming: number };
  let last = -1;
  let unchanged = 0;
  await eventually(
    async () => {
      const now = await transfers();
      unchanged = now.streaming === count && now.bytes_sent === last ? unchanged + 1 : 0;
      last = now.bytes_sent;
      return unchanged >= 2;
    },
    60_000,
    'every transfer stalled at the backend',
    500,
  );
  await asking.close();
  const held = (await liveBuffers()) - base;
  const perConnection = held / count;
  t.diagnostic(`Velocity holds ${(perConnection / 1024).toFixed(1)} KiB per slow-reading connection`);
  assert.ok(perConnection < CAP_PER_CONNECTION, `${(perConnection / 1024).toFixed(1)} KiB per slow reader ≤ ${CAP_PER_CONNECTION / 1024} KiB`);
  // The slow readers go first: Velocity's close then has no stalled transfer to wait for.
  await stopChild(clients, 'SIGKILL');
});

/**
 * A client that pipelines requests and reads none of the answers: once the answers back up, the request being
 * served cannot finish, and Velocity must stop reading the client past 64 KiB of waiting requests
 * (PIPELINE_BYTES, src/proxy/http1/connection.ts) instead of taking everything it sends into memory.
 */
const PIPELINED_CAP = 2 * 1024 * 1024;

for (const io of ['socket internals', 'public'] as const)
  test(`a client that pipelines 32 MB of requests and reads nothing: Velocity stops reading it (holds < ${PIPELINED_CAP / 1024 / 1024} MB), then answers them all once it reads (${io} socket I/O)`, async (t) => {
    // Read when the listener starts and when server connections are made.
    if (io === 'public') process.env.VELOCITY_SOCKET_IO = 'public';
    t.after(() => delete process.env.VELOCITY_SOCKET_IO);
    const backend = await startBackendProcess(t, 'pipe');
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: pipe\n    servers: [${backend.url}]\n    timeouts: { idle: 5m }\n`,
    );
    // ~2,700 GETs of 12 KB (a padded header) for 16 KB each, then one for "hello from pipe".
    const head = `GET /bytes/16384 HTTP/1.1\r\nHost: a\r\nX-Pad: ${'p'.repeat(12 * 1024)}\r\n\r\n`;
    const count = Math.ceil((32 * 1024 * 1024) / head.length);
    const requests = Buffer.from(`${head.repeat(count)}GET /last HTTP/1.1\r\nHost: a\r\n\r\n`, 'latin1');
    await wholeResponse(velocity.address.port, 256 * 1024);
    // The requests are in the base: the client's writes pass slices of them to the kernel, never copies.
    const base = await liveBuffers();
    const socket = connect(velocity.address.port, '127.0.0.1');
    socket.on('error', () => undefined);
    try {
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      socket.pause();
      // Written 64 KB at a time, the next once the kernel took the last: `handed - writableLength` is what it took.
      let handed = 0;
      const pump = () => {
        while (handed < requests.length) {
          const piece = requests.subarray(handed, handed + 65_536);
          handed += piece.length;
          if (!socket.write(piece)) return void socket.once('drain', pump);
        }
      };
      pump();
      const taken = () => handed - socket.writableLength;
      // Settled: the kernel took nothing more of the client's for a second. Not proof by itself: the buffers
      // between the two sockets grow as they are read (to several MB), and a Velocity that read everything
      // would keep taking; what it holds is the measure.
      await untilSteady(taken, "the client's writes stalled");
      const held = (await liveBuffers()) - base;
      t.diagnostic(`the client sent ${(taken() / 1024 / 1024).toFixed(1)} of ${(requests.length / 1024 / 1024).toFixed(1)} MB; Velocity holds ${(held / 1024).toFixed(0)} KiB`);
      assert.ok(taken() < requests.length, 'the kernel took every byte the client sent');
      assert.ok(held < PIPELINED_CAP, `Velocity holds ${(held / 1024 / 1024).toFixed(1)} MB of a client that reads nothing`);

      // Once the client reads, Velocity reads again, and every request is answered in turn, the last one last.
      let tail = '';
      const answered = new Promise<void>((resolve, reject) => {
        socket.on('data', (b: Buffer) => {
          tail = (tail + b.toString('latin1', Math.max(0, b.length - 64))).slice(-64);
          if (tail.endsWith('hello from pipe\n')) resolve();
        });
        socket.once('close', () => reject(new Error('the connection closed before the last request was answered')));
      });
      socket.resume();
      await answered;
      assert.equal(taken(), requests.length);
    } finally {
      socket.destroy();
    }
  });
