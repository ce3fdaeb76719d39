/**
 * The socket I/O below net's public API — shared-buffer reads of accepted sockets
 * (src/proxy/http1/socket-io.ts) and direct handle writes (src/socket-writer.ts): on this Node both are in
 * use (a Node upgrade that takes them away is noticed here, not silently slower); direct writes the
 * kernel does not take whole keep their order, their bytes and backpressure (one drain), and a failed
 * one reaches the socket as its error; an upgrade's bytes — those that came with its head and those
 * after the 101 — reach the server on both paths (socket internals, and VELOCITY_SOCKET_IO=public).
 * test/proxy/http1-server.test.ts runs the whole server on both paths.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Server, Socket } from 'node:net';
import { test } from 'node:test';
import { adoptReads } from '../../src/proxy/http1/socket-io.ts';
import { SocketWriter } from '../../src/socket-writer.ts';
import { startInProcess } from '../support/velocity.ts';

type Cleanup = { after(fn: () => unknown): void };

/** Listens on a loopback port; the cleanup closes the server without waiting for its connections (theirs is their own). */
async function listen(t: Cleanup, server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  return (server.address() as AddressInfo).port;
}

/** A connected client socket and the server's end of it. */
async function pair(t: Cleanup, serverOptions: { pauseOnConnect?: boolean } = {}): Promise<{ client: Socket; accepted: Socket }> {
  let take: (s: Socket) => void = () => undefined;
  const accepted = new Promise<Socket>((resolve) => {
    take = resolve;
  });
  const server = createServer({ allowHalfOpen: true, ...serverOptions }, (s) => take(s));
  const port = await listen(t, server);
  const client = connect(port, '127.0.0.1');
  client.on('error', () => undefined);
  t.after(() => client.destroy());
  const socket = await accepted;
  t.after(() => socket.destroy());
  await new Promise<void>((resolve) => (client.connecting ? client.once('connect', () => resolve()) : resolve()));
  return { client, accepted: socket };
}

async function until(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('an accepted plain socket is rebuilt to read into the shared buffer; one already read from keeps its stream', async (t) => {
  const { client, accepted } = await pair(t);
  const reads: string[] = [];
  const adopted = adoptReads(accepted, (buf, length) => void reads.push(buf.toString('latin1', 0, length)));
  assert.ok(adopted instanceof Socket, 'this Node lets the server read accepted sockets into a buffer of its own');
  t.after(() => adopted.destroy());
  assert.equal(adopted.remotePort, client.localPort);
  client.write('first');
  await until(() => reads.join('') === 'first', 'the first read');
  // What is written back goes out on the same connection; the original socket object goes when this one closes.
  let echoed = '';
  client.on('data', (b: Buffer) => {
    echoed += b.toString('latin1');
  });
  adopted.write('back');
  await until(() => echoed === 'back', 'the answer');
  adopted.destroy();
  await until(() => accepted.destroyed, 'the original socket to be released');

  const other = await pair(t);
  other.accepted.on('data', () => undefined);
  assert.equal(
    adoptReads(other.accepted, () => undefined),
    undefined,
    'a socket somebody reads is left alone',
  );
});

/** 64 pieces of 256 KiB, each filled with its index: order and completeness show in the hash. */
function pieces(): Buffer[] {
  return Array.from({ length: 64 }, (_, i) => Buffer.alloc(256 * 1024, i));
}

for (const direct of [true, false]) {
  test(`16 MB of writes to a peer that does not read arrive whole and in order, with backpressure and one drain (direct: ${direct})`, async (t) => {
    const { client, accepted } = await pair(t);
    // The reader waits until everything was written: most of it must queue.
    client.pause();
    let drains = 0;
    const writer = new SocketWriter(accepted, direct, () => {
      drains++;
    });
    accepted.on('drain', () => {
      drains++;
    });
    const all = pieces();
    const answers = all.map((p) => writer.write(p));
    assert.ok(answers.includes(false), 'a write answered false (wait for a drain)');
    assert.ok(writer.pendingBytes > 0, 'bytes are counted as pending');
    // On this Node the direct path is in use: it bypassed the Writable (a Node upgrade that takes it away fails here).
    if (direct) assert.equal(accepted.writableLength, 0, 'the direct path bypassed the Writable');
    else assert.ok(accepted.writableLength > 0, 'the public path went through the Writable');
    // A write through the socket itself (a corked response, the upgrade tunnel) queues behind the direct ones.
    const tail = Buffer.alloc(1000, 255);
    let flushed = false;
    accepted.write(tail, (err) => {
      assert.equal(err ?? null, null);
      flushed = true;
    });
    const hash = createHash('sha256');
    let received = 0;
    client.on('data', (b: Buffer) => {
      hash.update(b);
      received += b.length;
    });
    client.resume();
    const total = all.reduce((n, p) => n + p.length, 0) + tail.length;
    await until(() => received === total && flushed, 'every byte');
    const expected = createHash('sha256');
    for (const p of all) expected.update(p);
    expected.update(tail);
    assert.equal(hash.digest('hex'), expected.digest('hex'));
    assert.equal(writer.pendingBytes, 0);
    await until(() => drains >= 1, 'a drain');
    // Let any second drain show up before counting.
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(drains, 1, 'one drain');
  });
}

test('a direct write on a connection the peer reset destroys the socket with the write error', async (t) => {
  // The server's end never reads (pauseOnConnect): only a write can learn of the reset.
  const { client, accepted } = await pair(t, { pauseOnConnect: true });
  const errors: (Error & { code?: string; syscall?: string })[] = [];
  accepted.on('error', (err) => errors.push(err));
  client.resetAndDestroy();
  await new Promise((r) => client.once('close', r));
  const writer = new SocketWriter(accepted, true);
  // A write sent before the reset arrived is still taken by the kernel; one after it fails.
  for (let i = 0; i < 500 && !accepted.destroyed; i++) {
    writer.write(Buffer.alloc(1024));
    await new Promise((r) => setTimeout(r, 10));
  }
  await until(() => accepted.destroyed && accepted.closed, 'the socket to close');
  assert.deepEqual(
    errors.map((e) => [e.syscall, e.code === 'ECONNRESET' || e.code === 'EPIPE']),
    [['write', true]],
    `the write error reached the socket: ${errors.map((e) => e.message).join(', ')}`,
  );
});

for (const io of ['socket internals', 'public'] as const) {
  test(`an upgrade's bytes sent with its head, and those after the 101, reach the server (${io})`, async (t) => {
    if (io === 'public') {
      process.env.VELOCITY_SOCKET_IO = 'public';
      t.after(() => {
        delete process.env.VELOCITY_SOCKET_IO;
      });
    }
    // A raw backend: answers the upgrade with 101, then echoes every byte upper-cased.
    let open = 0;
    const backend = createServer((s) => {
      open++;
      s.once('close', () => open--);
      let head = '';
      const onHead = (b: Buffer) => {
        head += b.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        s.removeListener('data', onHead);
        s.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
        const rest = head.slice(end + 4);
        if (rest) s.write(rest.toUpperCase());
        s.on('data', (more: Buffer) => s.write(more.toString('latin1').toUpperCase()));
      };
      s.on('data', onHead);
      s.on('error', () => undefined);
    });
    const backendPort = await listen(t, backend);
    const velocity = await startInProcess(t, `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: [http://127.0.0.1:${backendPort}]\n`);
    const socket = connect(velocity.address.port, '127.0.0.1');
    t.after(() => socket.destroy());
    let text = '';
    socket.on('data', (b: Buffer) => {
      text += b.toString('latin1');
    });
    socket.write(
      'GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nearly-bytes;',
    );
    await until(() => text.includes('EARLY-BYTES;'), 'the bytes sent with the head, echoed');
    assert.match(text, /^HTTP\/1\.1 101 /);
    socket.write('later-bytes');
    await until(() => text.includes('LATER-BYTES'), 'the bytes sent after the 101, echoed');
    // The tunnel ends with the client (else shutdown would wait for it).
    socket.destroy();
    await until(() => open === 0, 'the tunnel to close');
  });
}
