/**
 * The socket I/O below net's public API — shared-buffer reads of accepted sockets
 * (src/proxy/http1/socket-io.ts), reads straight from the handle (src/socket-reader.ts) and direct handle
 * writes (src/socket-writer.ts): on this Node all are in use, on client and server sockets (a Node upgrade
 * that takes them away is noticed here, not silently slower); reads past net still give net the end of
 * the stream, errors, and every read of a socket with a timeout; direct writes the
 * kernel does not take whole keep their order, their bytes and backpressure (one drain), and a failed
 * one reaches the socket as its error; an upgrade's bytes — those that came with its head and those
 * after the 101 — reach the server on both paths (socket internals, and VELOCITY_SOCKET_IO=public).
 * test/proxy/http1-server.test.ts runs the whole server on both paths.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Server, Socket } from 'node:net';
import { test } from 'node:test';
import { adoptReads, releaseReads } from '../../src/proxy/http1/socket-io.ts';
import { readDirectly } from '../../src/socket-reader.ts';
import { SocketWriter } from '../../src/socket-writer.ts';
import type { Http1Connection } from '../../src/upstream/http1-connection.ts';
import { PoolSet } from '../../src/upstream/http1-pool.ts';
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

/** The function a socket's handle calls per read: net's onStreamRead, or ours (src/socket-reader.ts). */
function onReadOf(socket: Socket): unknown {
  return (socket as unknown as { _handle: { onread: unknown } })._handle.onread;
}

test('an accepted plain socket is rebuilt to read into the shared buffer; one already read from keeps its stream', async (t) => {
  const { client, accepted } = await pair(t);
  const reads: string[] = [];
  const adopted = adoptReads(accepted, (buf, length) => void reads.push(buf.toString('latin1', 0, length)));
  assert.ok(adopted instanceof Socket, 'this Node lets the server read accepted sockets into a buffer of its own');
  t.after(() => adopted.destroy());
  assert.equal(adopted.remotePort, client.localPort);
  // Reads with bytes come straight from the handle (net's function is the one a plain net socket has).
  const netOnRead = onReadOf(client);
  assert.notEqual(onReadOf(adopted), netOnRead, 'reads come straight from the handle');
  client.write('first');
  await until(() => reads.join('') === 'first', 'the first read');
  // What is written back goes out on the same connection; the original socket object goes when this one closes.
  let echoed = '';
  client.on('data', (b: Buffer) => {
    echoed += b.toString('latin1');
  });
  adopted.write('back');
  await until(() => echoed === 'back', 'the answer');
  // Let go (a WebSocket hand-off): reads go through net and the socket's Readable again.
  releaseReads(adopted);
  assert.equal(onReadOf(adopted), netOnRead, 'net reads the released socket again');
  let streamed = '';
  adopted.on('data', (b: Buffer) => {
    streamed += b.toString('latin1');
  });
  client.write('more');
  await until(() => streamed === 'more', 'a read through the stream');
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

/**
 * A connected socket reading into two buffers of its own in turn (as an upstream connection's), its reads
 * with bytes past net (`direct`), and the server's end of it (`peer`). What net's callback gets (`viaNet`)
 * is read from the buffer the reader knows to be current: net is not told of the buffers handed over.
 */
async function readingPair(t: Cleanup) {
  let take: (s: Socket) => void = () => undefined;
  const accepted = new Promise<Socket>((resolve) => {
    take = resolve;
  });
  const port = await listen(
    t,
    createServer({ allowHalfOpen: true }, (s) => take(s)),
  );
  const buffers = [Buffer.alloc(64), Buffer.alloc(64)];
  let current = 0;
  const text = (length: number) => (buffers[current] as Buffer).toString('latin1', 0, length);
  const viaNet: string[] = [];
  const direct: string[] = [];
  const errors: (Error & { code?: string })[] = [];
  const socket = connect({
    host: '127.0.0.1',
    port,
    allowHalfOpen: true,
    onread: {
      buffer: buffers[0] as Buffer,
      callback: (length: number) => {
        viaNet.push(text(length));
        return true;
      },
    },
  });
  socket.on('error', (err) => errors.push(err));
  t.after(() => socket.destroy());
  const peer = await accepted;
  peer.on('error', () => undefined);
  t.after(() => peer.destroy());
  await new Promise<void>((resolve) => (socket.connecting ? socket.once('connect', () => resolve()) : resolve()));
  const restore = readDirectly(socket, (length) => {
    direct.push(text(length));
    current = 1 - current;
    return buffers[current];
  });
  assert.ok(restore, 'this Node lets reads with bytes past net');
  return { socket, peer, buffers, viaNet, direct, errors, restore };
}

test('reads past net: bytes straight to the reader and into the buffer it answers; a socket with a timeout, or given back, reads through net', async (t) => {
  const { socket, peer, buffers, viaNet, direct, restore } = await readingPair(t);
  assert.notEqual(onReadOf(socket), onReadOf(peer), 'reads come straight from the handle');
  peer.write('one');
  await until(() => direct.length === 1, 'the first read');
  peer.write('two');
  await until(() => direct.length === 2, 'the second read');
  assert.deepEqual(direct, ['one', 'two']);
  assert.equal((buffers[1] as Buffer).toString('latin1', 0, 3), 'two', 'the second read went into the buffer the first answered');
  // A timeout is refreshed by net's onStreamRead: while one is set, reads go through it.
  socket.setTimeout(60_000);
  peer.write('three');
  await until(() => viaNet.length === 1, 'a read through net');
  socket.setTimeout(0);
  peer.write('four');
  await until(() => direct.length === 3, 'a direct read again');
  restore();
  assert.equal(onReadOf(socket), onReadOf(peer), 'net reads the socket again');
  peer.write('five');
  await until(() => viaNet.length === 2, 'a read through net');
  assert.deepEqual(direct, ['one', 'two', 'four']);
  assert.deepEqual(viaNet, ['three', 'five']);
});

test("reads past net: the peer's end is the socket's 'end' (it still writes: half-close), a reset its 'error'", async (t) => {
  const ended = await readingPair(t);
  ended.peer.write('last');
  await until(() => ended.direct.length === 1, 'the read');
  let gotEnd = false;
  ended.socket.on('end', () => {
    gotEnd = true;
  });
  ended.peer.end();
  await until(() => gotEnd, "the socket's 'end'");
  let back = '';
  ended.peer.on('data', (b: Buffer) => {
    back += b.toString('latin1');
  });
  ended.socket.end('answer after the end');
  await until(() => back === 'answer after the end', 'the answer to the half-closed peer');
  assert.deepEqual(ended.errors, []);

  const reset = await readingPair(t);
  reset.peer.resetAndDestroy();
  await until(() => reset.socket.destroyed && reset.socket.closed, 'the socket to close');
  assert.deepEqual(
    reset.errors.map((e) => e.code),
    ['ECONNRESET'],
  );
});

test('an upstream connection reads past net (src/socket-reader.ts), and through net with VELOCITY_SOCKET_IO=public', async (t) => {
  const backend = createServer((s) => {
    s.on('data', () => s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'));
    s.on('error', () => undefined);
  });
  const port = await listen(t, backend);
  const before = process.env.VELOCITY_SOCKET_IO;
  for (const io of ['socket internals', 'public'] as const) {
    // Both cases, whatever the environment this test runs in.
    if (io === 'public') process.env.VELOCITY_SOCKET_IO = 'public';
    else delete process.env.VELOCITY_SOCKET_IO;
    const pools = new PoolSet();
    try {
      const pool = pools.get(`http://127.0.0.1:${port}`, { host: '127.0.0.1', port }, { connectTimeout: 30_000, keepAliveTimeout: 600_000, tls: undefined });
      let body = '';
      let ended = false;
      pool.request(
        { method: 'GET', path: '/', headers: ['host', 'backend'], body: null, responseHeaderTimeout: 30_000, idleTimeout: 30_000 },
        {
          onInformational() {},
          onHead: () => false,
          onData: (chunk: Buffer) => {
            body += chunk.toString('latin1');
            return true;
          },
          chunkReleased: () => true,
          onEnd: () => {
            ended = true;
          },
          onError: (err: Error) => {
            throw err;
          },
        },
      );
      await until(() => ended, 'the response');
      assert.equal(body, 'ok');
      const [connection] = (pool as unknown as { idle: Http1Connection[] }).idle;
      assert.ok(connection, 'the connection went back to the pool');
      const plain = connect({ host: '127.0.0.1', port }).on('error', () => undefined);
      const netOnRead = onReadOf(plain);
      plain.destroy();
      if (io === 'public') assert.equal(onReadOf(connection.socket), netOnRead, 'net reads the connection');
      else assert.notEqual(onReadOf(connection.socket), netOnRead, 'the connection reads past net');
    } finally {
      pools.destroyAll();
      if (before === undefined) delete process.env.VELOCITY_SOCKET_IO;
      else process.env.VELOCITY_SOCKET_IO = before;
    }
  }
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

/** What the client end reads until `bytes` came (or it ended), and whether its 'end' came after them. */
function readAll(client: Socket, bytes: number): Promise<{ text: string; ended: boolean }> {
  return new Promise((resolve) => {
    let text = '';
    const done = (ended: boolean) => resolve({ text, ended });
    client.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.length >= bytes && client.readableEnded) done(true);
    });
    client.once('end', () => done(true));
    client.once('close', () => done(false));
  });
}

const nextTurn = () => new Promise((r) => setImmediate(r));

test("writes held for the turn's end: nothing leaves before it, then all of a turn's in order, copies of the Buffers given, before a later write", async (t) => {
  const { client, accepted } = await pair(t);
  const writer = new SocketWriter(accepted, true);
  const received = readAll(client, 0);
  const buffer = Buffer.from('b1');
  writer.writeAtTurnEnd('a1 ');
  writer.writeAtTurnEnd(buffer);
  buffer.write('XX');
  writer.writeAtTurnEnd(' c1');
  assert.equal(writer.pendingBytes, 8, 'the held bytes count as pending');
  assert.equal(writer.referencedBytes, 0, "a held write keeps no caller's Buffer");
  await new Promise((r) => process.nextTick(r));
  assert.equal(writer.pendingBytes, 8, 'still held after the ticks of this turn');
  await nextTurn();
  assert.equal(writer.pendingBytes, 0, "written at the turn's end");
  writer.writeAtTurnEnd(' d2');
  // A write that is not held goes after what is held.
  writer.write(' e2');
  accepted.end();
  const { text, ended } = await received;
  assert.equal(text, 'a1 b1 c1 d2 e2');
  assert.ok(ended, 'the end came after the bytes');
});

test("flushedAfter waits for the held bytes; flush() sends them before the socket's end; a socket destroyed first drops them", async (t) => {
  const { client, accepted } = await pair(t);
  const writer = new SocketWriter(accepted, true);
  const received = readAll(client, 0);
  const order: string[] = [];
  writer.writeAtTurnEnd('held');
  writer.flushedAfter(() => order.push(`flushed with ${writer.pendingBytes} pending`));
  await new Promise((r) => process.nextTick(r));
  assert.deepEqual(order, [], 'not before the held bytes were written');
  await until(() => order.length === 1, 'the flushed callback');
  assert.deepEqual(order, ['flushed with 0 pending']);
  writer.writeAtTurnEnd(' then the end');
  writer.flush();
  accepted.end();
  assert.deepEqual(await received, { text: 'held then the end', ended: true });

  const other = await pair(t);
  const dropped = new SocketWriter(other.accepted, true);
  const errors: unknown[] = [];
  const got = readAll(other.client, 0);
  dropped.writeAtTurnEnd('never sent');
  dropped.flushedAfter((err?: unknown) => errors.push(err ?? 'no error'));
  other.accepted.destroy();
  await until(() => errors.length === 1, "the destroyed socket's flushed callback");
  assert.equal((await got).text, '', 'nothing of a held write reaches the peer of a socket destroyed before the turn ended');
});

test('a writer that cannot write directly writes at once (VELOCITY_SOCKET_IO=public, TLS)', async (t) => {
  const { client, accepted } = await pair(t);
  const writer = new SocketWriter(accepted, false);
  const received = readAll(client, 0);
  writer.writeAtTurnEnd('now');
  assert.equal(writer.pendingBytes, 0, 'handed to the socket at once');
  accepted.end();
  assert.deepEqual(await received, { text: 'now', ended: true });
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
