/**
 * Idle pooled connections read into one buffer per thread (src/upstream/http1-connection.ts IDLE_READ)
 * instead of keeping 16 KiB each: what they keep, and that body bytes of a first read after idling are
 * the connection's own before a client can hold them.
 */
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { PoolSet, type ServerPool } from '../../src/upstream/http1-pool.ts';
import type { ResponseHead } from '../../src/upstream/response-parser.ts';
import { eventually } from '../support/velocity.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** ArrayBuffer bytes alive after full GCs (V8 frees the memory of dead ones on a helper thread, after the GC). */
async function settledArrayBuffers(): Promise<number> {
  gc();
  await new Promise((done) => setTimeout(done, 100));
  gc();
  return process.memoryUsage().arrayBuffers;
}

/** The body a request for /NAME gets: 5000 bytes, NAME's letter over and over (arrives with the head in one read). */
const bodyFor = (path: string): Buffer => Buffer.alloc(5000, path.slice(1, 2));

/** A keep-alive server; after hold() it keeps its answers until release() (many connections open at once). */
async function startServer(t: TestContext): Promise<{ port: number; hold(): void; held(): number; release(): void }> {
  let held: (() => void)[] = [];
  let holdOn = false;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let pending = '';
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const path = pending.slice(4, pending.indexOf(' ', 4));
        pending = pending.slice(end + 4);
        const body = bodyFor(path);
        const answer = () => socket.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body]));
        if (holdOn) held.push(answer);
        else answer();
      }
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return {
    port: (server.address() as { port: number }).port,
    hold() {
      holdOn = true;
    },
    held: () => held.length,
    release() {
      holdOn = false;
      for (const answer of held) answer();
      held = [];
    },
  };
}

/**
 * A GET's body chunks: kept as given when `hold` (a client that holds them: chunkReleased false),
 * else copied (a client that took each at once).
 */
function get(pool: ServerPool, path: string, hold = true): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    pool.request(
      { method: 'GET', path, headers: ['host', 'backend'], body: null, responseHeaderTimeout: 30_000, idleTimeout: 30_000 },
      {
        onInformational() {},
        onHead: (_head: ResponseHead) => false,
        onData: (chunk: Buffer) => chunks.push(hold ? chunk : Buffer.from(chunk)) > 0,
        chunkReleased: () => !hold,
        onEnd: () => resolve(chunks),
        onError: reject,
      },
    );
  });
}

function poolFor(t: TestContext, port: number): ServerPool {
  const pools = new PoolSet();
  t.after(() => pools.destroyAll());
  return pools.get(`http://127.0.0.1:${port}`, { host: '127.0.0.1', port }, { connectTimeout: 30_000, keepAliveTimeout: 600_000, tls: undefined });
}

describe('idle upstream connections share one read buffer', () => {
  test('a held body chunk from the first read after idling stays intact while other idle connections read', async (t) => {
    const server = await startServer(t);
    const pool = poolFor(t, server.port);
    // Two connections, both left idle.
    await Promise.all([get(pool, '/x'), get(pool, '/y')]);
    assert.equal(pool.idleCount, 2);
    const a = await get(pool, '/a');
    // The other idle connection's first read lands where a's did.
    const b = await get(pool, '/b');
    assert.ok(Buffer.concat(a).equals(bodyFor('/a')), 'the held chunks of /a are its bytes');
    assert.ok(Buffer.concat(b).equals(bodyFor('/b')));
  });

  test('a sink done with each chunk when onData returns gets the bytes of a first read after idling where they were read', async (t) => {
    const server = await startServer(t);
    const pool = poolFor(t, server.port);
    await Promise.all([get(pool, '/x'), get(pool, '/y')]);
    assert.equal(pool.idleCount, 2);
    /** A GET whose sink copies each chunk (and says so) but reports it still held: no own copy is made to hold. */
    const copying = (path: string): Promise<{ body: Buffer; buffers: ArrayBufferLike[] }> =>
      new Promise((resolve, reject) => {
        const copies: Buffer[] = [];
        const buffers: ArrayBufferLike[] = [];
        pool.request(
          { method: 'GET', path, headers: ['host', 'backend'], body: null, responseHeaderTimeout: 30_000, idleTimeout: 30_000 },
          {
            onInformational() {},
            onHead: () => false,
            onData: (chunk: Buffer) => {
              buffers.push(chunk.buffer);
              return copies.push(Buffer.from(chunk)) > 0;
            },
            chunkReleased: () => false,
            copiesChunk: () => true,
            onEnd: () => resolve({ body: Buffer.concat(copies), buffers }),
            onError: reject,
          },
        );
      });
    const a = await copying('/a');
    const b = await copying('/b');
    assert.ok(a.body.equals(bodyFor('/a')));
    assert.ok(b.body.equals(bodyFor('/b')));
    // Both first reads went into the one shared buffer and were passed from there (an own copy held by /a's sink would differ).
    assert.equal(a.buffers[0], b.buffers[0]);
  });

  test('64 connections left idle keep no 16 KiB read buffer each', async (t) => {
    const server = await startServer(t);
    const pool = poolFor(t, server.port);
    await get(pool, '/w', false);
    const before = await settledArrayBuffers();
    // Held by the server until all 64 are open: 64 connections, then all idle at once.
    server.hold();
    const paths = Array.from({ length: 64 }, (_, n) => `/${String.fromCharCode(97 + (n % 26))}`);
    const all = paths.map((path) => get(pool, path, false));
    await eventually(() => pool.size === 64 && server.held() === 64, 30_000, '64 requests at the server at once');
    server.release();
    const bodies = await Promise.all(all);
    for (const [n, chunks] of bodies.entries()) assert.ok(Buffer.concat(chunks).equals(bodyFor(paths[n] as string)));
    assert.equal(pool.idleCount, 64);
    all.length = 0;
    bodies.length = 0;
    const kept = (await settledArrayBuffers()) - before;
    // 64 × 16 KiB = 1 MiB if each kept its own; the spares are 256 KiB at most.
    assert.ok(kept < 512 * 1024, `${Math.round(kept / 1024)} KiB of ArrayBuffers kept by 64 idle connections`);
  });
});
