/**
 * gzip encoders reused across responses (src/middleware/encoders.ts), through in-process Velocity on real
 * sockets: every response decodes byte-exact after many through the same encoders, a response cut short
 * (client gone, server gone) never gives its encoder back, and the spares are bounded (the rest closed).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Agent, createServer, get, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import { brotliDecompressSync, gunzipSync, gzipSync, zstdDecompressSync } from 'node:zlib';
import { compress, compressOptions } from '../../src/middleware/compress.ts';
import { gzipEncoderCounts, gzipWindowFor, SPARE_GZIP, WHOLE_MAX } from '../../src/middleware/encoders.ts';
import { gzipWhole, wholeGzipCounts } from '../../src/middleware/whole-gzip.ts';
import { eventually, startInProcess } from '../support/velocity.ts';
import { Recorded, view } from './recorded-response.ts';

const DECODE: Record<string, (b: Buffer) => Buffer> = { gzip: gunzipSync, br: brotliDecompressSync, zstd: zstdDecompressSync };

/** A body of its own per number: sizes from 0 to ~300 KB, text that differs from one to the next. */
function bodyOf(n: number): Buffer {
  const length = (n * 7919) % 300_000;
  const unit = Buffer.from(`response ${n}: {"id": ${n * 31}, "name": "item-${n}", "ok": ${n % 2 === 0}}\n`);
  const out = Buffer.alloc(length);
  for (let at = 0; at < length; at += unit.length) unit.copy(out, at, 0, Math.min(unit.length, length - at));
  return out;
}

/** Started in a test: `handle` answers what it knows (true), /n/N is bodyOf(N) with a Content-Length. */
async function startServer(t: TestContext, handle: (path: string, res: ServerResponse) => boolean = () => false): Promise<number> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '/';
    if (handle(path, res)) return;
    const body = bodyOf(Number(/^\/n\/(\d+)$/.exec(path)?.[1] ?? 0));
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return (server.address() as AddressInfo).port;
}

async function startVelocity(t: TestContext, serverPort: number, encodings = '[gzip]'): Promise<number> {
  const velocity = await startInProcess(
    t,
    `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: [http://127.0.0.1:${serverPort}]\n    middleware: [{ compress: { encodings: ${encodings}, min_size: 0 } }]\n`,
  );
  return velocity.address.port;
}

interface Fetched {
  status: number;
  encoding: string | undefined;
  /** The Content-Length header, when there was one (else the body was chunked). */
  length: string | undefined;
  body: Buffer;
}

function fetch(port: number, path: string, acceptEncoding: string, agent?: Agent): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path, agent, headers: { 'accept-encoding': acceptEncoding } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, encoding: res.headers['content-encoding'], length: res.headers['content-length'], body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** Fetches /n/from … /n/(to-1), `parallel` at a time on keep-alive connections, and checks each decodes to its own body. */
async function fetchAllExact(port: number, encoding: string, from: number, to: number, parallel: number): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: parallel });
  try {
    let next = from;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (next < to) {
          const n = next++;
          const res = await fetch(port, `/n/${n}`, encoding, agent);
          assert.equal(res.status, 200);
          assert.equal(res.encoding, encoding, `response ${n}`);
          assert.ok((DECODE[encoding] as (b: Buffer) => Buffer)(res.body).equals(bodyOf(n)), `response ${n} decodes byte-exact`);
        }
      }),
    );
  } finally {
    agent.destroy();
  }
}

const taken = () => gzipEncoderCounts().made + gzipEncoderCounts().reused;

describe('gzip encoders reused across responses', () => {
  test('300 responses of 0 to 300 KB, 6 at a time: each decodes byte-exact, and encoders are reused, not made per response', async (t) => {
    const port = await startVelocity(t, await startServer(t));
    const before = gzipEncoderCounts();
    await fetchAllExact(port, 'gzip', 0, 300, 6);
    const after = gzipEncoderCounts();
    const streamed = Array.from({ length: 300 }, (_, n) => bodyOf(n).length).filter((length) => length > WHOLE_MAX).length;
    assert.ok(streamed > 250);
    assert.equal(after.made + after.reused - before.made - before.reused, streamed, 'one encoder per response over WHOLE_MAX');
    assert.ok(after.made - before.made <= 6, `${after.made - before.made} made for 300 responses 6 at a time`);
    assert.ok(after.idle <= SPARE_GZIP);
  });

  test('bodies of a known length up to WHOLE_MAX are compressed whole without a stream encoder, in each encoding, byte-exact, sent with their compressed length', async (t) => {
    // Sizes around gzipWindowFor's steps and WHOLE_MAX.
    const serverPort = await startServer(t, (path, res) => {
      const length = /^\/length\/(\d+)$/.exec(path)?.[1];
      if (length === undefined) return false;
      const body = bodyOf(299_999).subarray(0, Number(length));
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
      return true;
    });
    const port = await startVelocity(t, serverPort, '[gzip, br, zstd]');
    const before = taken();
    for (const encoding of ['gzip', 'br', 'zstd']) {
      for (const length of [0, 1, 21, 249, 250, 700, 1800, 4000, 8000, 16_121, 16_122, WHOLE_MAX]) {
        const res = await fetch(port, `/length/${length}`, encoding);
        assert.equal(res.encoding, encoding);
        assert.equal(res.length, String(res.body.length), 'the compressed length, not chunks');
        assert.ok((DECODE[encoding] as (b: Buffer) => Buffer)(res.body).equals(bodyOf(299_999).subarray(0, length)), `${encoding}, ${length} bytes`);
      }
    }
    assert.equal(taken(), before, 'no gzip stream encoder taken');
    // One byte over: a stream.
    const over = await fetch(port, `/length/${WHOLE_MAX + 1}`, 'gzip');
    assert.ok(gunzipSync(over.body).equals(bodyOf(299_999).subarray(0, WHOLE_MAX + 1)));
    assert.equal(over.length, undefined, 'streamed: chunked');
    assert.equal(taken(), before + 1);
  });

  test('a small body written in pieces, or at once from a buffer the writer then reuses, is compressed whole byte-exact', async () => {
    const { wrap } = compress(compressOptions.parse({ encodings: ['gzip'] }));
    assert.ok(wrap);
    const body = bodyOf(299_999).subarray(0, 10_000);
    const head = ['content-type', 'text/plain', 'content-length', String(body.length)];
    // In ten writes from one buffer, overwritten after each (as the upstream connection does with its reads).
    const pieces = new Recorded();
    const res = wrap(view, pieces);
    res.writeHead(200, undefined, head);
    const buffer = Buffer.alloc(1000);
    for (let at = 0; at < body.length; at += 1000) {
      body.copy(buffer, 0, at, at + 1000);
      assert.equal(res.write(buffer), true);
      buffer.fill(0xff);
    }
    res.end();
    assert.ok(gunzipSync(await pieces.body()).equals(body), 'in pieces');
    // In one write, the buffer overwritten at once.
    const once = new Recorded();
    const res2 = wrap(view, once);
    res2.writeHead(200, undefined, head);
    const whole = Buffer.from(body);
    res2.write(whole);
    whole.fill(0xff);
    res2.end();
    assert.ok(gunzipSync(await once.body()).equals(body), 'at once');
  });

  test('whole bodies are gzipped on one kept handle per level and window, byte for byte what gzipSync makes', async (t) => {
    // 200 sizes, ~80 bytes apart up to WHOLE_MAX: seven windows between them.
    const sizes = Array.from({ length: 200 }, (_, n) => Math.round((n * WHOLE_MAX) / 199));
    const windows = new Set(sizes.map((length) => gzipWindowFor(length).windowBits)).size;
    let made = wholeGzipCounts().made;
    for (const length of sizes) {
      const body = bodyOf(299_999).subarray(0, length);
      const window = gzipWindowFor(length);
      assert.ok(gzipWhole(1, window, body, Buffer.allocUnsafe(length + 64))?.equals(gzipSync(body, { level: 1, ...window })), `${length} bytes`);
    }
    assert.ok(wholeGzipCounts().made - made <= windows, `${wholeGzipCounts().made - made} handles made for ${windows} windows`);
    // Through Velocity, twice over: no handle made per response.
    const port = await startVelocity(
      t,
      await startServer(t, (path, res) => {
        const length = Number(/^\/length\/(\d+)$/.exec(path)?.[1] ?? -1);
        if (length < 0) return false;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': length });
        res.end(bodyOf(299_999).subarray(0, length));
        return true;
      }),
    );
    made = wholeGzipCounts().made;
    const bodies = wholeGzipCounts().bodies;
    for (const length of [...sizes, ...sizes]) {
      const res = await fetch(port, `/length/${length}`, 'gzip');
      assert.equal(res.length, String(res.body.length), 'compressed whole');
      assert.ok(gunzipSync(res.body).equals(bodyOf(299_999).subarray(0, length)), `${length} bytes through Velocity`);
    }
    assert.equal(wholeGzipCounts().bodies - bodies, sizes.length * 2, 'every response gzipped on a kept handle');
    assert.ok(wholeGzipCounts().made - made <= windows, `${wholeGzipCounts().made - made} handles made for ${sizes.length * 2} responses`);
  });

  test('a whole body whose output does not fit is left to gzipSync, and the handle compresses the next body byte-exact', () => {
    const body = randomBytes(200);
    const window = gzipWindowFor(body.length);
    assert.equal(gzipWhole(1, window, body, Buffer.allocUnsafe(64)), undefined, 'random bytes do not fit in 64');
    const next = bodyOf(7).subarray(0, 200);
    assert.ok(gzipWhole(1, window, next, Buffer.allocUnsafe(264))?.equals(gzipSync(next, { level: 1, ...window })));
  });

  test('at level best a small body goes through a stream encoder (brotli 11 would hold the event loop for milliseconds)', async () => {
    const { wrap } = compress(compressOptions.parse({ encodings: ['gzip'], level: 'best' }));
    assert.ok(wrap);
    const before = taken();
    const inner = new Recorded();
    const res = wrap(view, inner);
    res.writeHead(200, undefined, ['content-type', 'text/plain', 'content-length', '2000']);
    res.write(bodyOf(299_999).subarray(0, 2000));
    res.end();
    assert.ok(gunzipSync(await inner.body()).equals(bodyOf(299_999).subarray(0, 2000)));
    assert.equal(taken(), before + 1);
  });

  test("gzip's window and hash for a body whole follow nginx's rule: halved while the body fits in half the window", () => {
    assert.deepEqual(gzipWindowFor(WHOLE_MAX), { windowBits: 15, memLevel: 8 });
    assert.deepEqual(gzipWindowFor(16_122), { windowBits: 15, memLevel: 8 });
    assert.deepEqual(gzipWindowFor(16_121), { windowBits: 14, memLevel: 7 });
    assert.deepEqual(gzipWindowFor(4000), { windowBits: 13, memLevel: 6 });
    assert.deepEqual(gzipWindowFor(250), { windowBits: 10, memLevel: 3 });
    assert.deepEqual(gzipWindowFor(249), { windowBits: 9, memLevel: 2 });
    assert.deepEqual(gzipWindowFor(0), { windowBits: 9, memLevel: 2 });
  });

  test('br and zstd (encoders made per response) decode byte-exact too, and take no gzip encoder', async (t) => {
    const port = await startVelocity(t, await startServer(t), '[br, zstd]');
    const before = taken();
    await fetchAllExact(port, 'br', 0, 40, 4);
    await fetchAllExact(port, 'zstd', 40, 80, 4);
    assert.equal(taken(), before);
  });

  test('a response cut short by the client or by the server does not give its encoder back; the next responses are byte-exact', async (t) => {
    // Bytes that do not compress: the encoder's output reaches the client at once.
    const noise = randomBytes(256 * 1024);
    let held: ServerResponse | undefined;
    let heldClosed = false;
    const serverPort = await startServer(t, (path, res) => {
      if (path !== '/cut-by-client' && path !== '/cut-by-server') return false;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 100 * noise.length });
      res.write(noise);
      // The server goes away mid-body: Velocity sees a truncated body (an upstream error).
      if (path === '/cut-by-server') setTimeout(() => res.destroy(), 100);
      else {
        held = res;
        res.once('close', () => {
          heldClosed = true;
        });
      }
      return true;
    });
    const port = await startVelocity(t, serverPort);
    // Spares to take from: the cut responses take one each.
    await fetchAllExact(port, 'gzip', 0, 20, 4);
    const start = gzipEncoderCounts();

    // The client goes away in the middle of the body.
    await new Promise<void>((resolve, reject) => {
      const req = get({ host: '127.0.0.1', port, path: '/cut-by-client', headers: { 'accept-encoding': 'gzip' } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.on('close', () => reject(new Error('closed before any body')));
    });
    // Velocity notices when it writes the next bytes to the client that left; then it drops the server connection.
    await eventually(
      () => {
        if (!heldClosed) (held as ServerResponse).write(noise.subarray(0, 4096));
        return heldClosed;
      },
      30_000,
      'Velocity closed the server connection of the cut response',
    );
    assert.equal(gzipEncoderCounts().idle, start.idle - 1, 'the cut response kept its encoder out of the spares');

    // The server goes away in the middle of the body.
    const cut = await fetch(port, '/cut-by-server', 'gzip').catch((error: Error) => error);
    assert.ok(cut instanceof Error || cut.body.length < 100 * noise.length, 'the client does not get a whole body');
    assert.equal(gzipEncoderCounts().idle, start.idle - 2, 'the second cut response kept its encoder out of the spares');

    await fetchAllExact(port, 'gzip', 20, 80, 4);
    // Every encoder made since is a spare, closed or one of the two cut responses' (destroyed): none came back later.
    const end = gzipEncoderCounts();
    assert.equal(end.idle, start.idle + (end.made - start.made) - (end.closed - start.closed) - 2);
  });

  test('a client that stops reading pauses the encoder with output waiting; once it reads, the response completes and the encoder is reused', async (t) => {
    // Bytes that do not compress: 8 MB of output cannot all wait in the sockets' buffers.
    const noise = randomBytes(8 * 1024 * 1024);
    let sending: ServerResponse | undefined;
    const port = await startVelocity(
      t,
      await startServer(t, (path, res) => {
        if (path !== '/noise') return false;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': noise.length });
        sending = res;
        // In 1 MB writes, each once the last was taken: writableNeedDrain says when Velocity stopped reading.
        let at = 0;
        const more = () => {
          while (at < noise.length) {
            const piece = noise.subarray(at, at + 1024 * 1024);
            at += piece.length;
            if (!res.write(piece)) return void res.once('drain', more);
          }
          res.end();
        };
        more();
        return true;
      }),
    );
    await fetchAllExact(port, 'gzip', 0, 10, 2);
    const before = gzipEncoderCounts();
    const zipped = await new Promise<Buffer>((resolve, reject) => {
      const req = get({ host: '127.0.0.1', port, path: '/noise', headers: { 'accept-encoding': 'gzip' } }, (res) => {
        const chunks: Buffer[] = [];
        res.pause();
        // The client reads once the server has to wait for Velocity, which waits for the client.
        eventually(() => sending?.writableNeedDrain === true, 30_000, 'the server waits for Velocity').then(() => {
          res.on('data', (c: Buffer) => chunks.push(c));
          res.resume();
        }, reject);
        res.on('end', () => resolve(Buffer.concat(chunks)));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
    assert.ok(gunzipSync(zipped).equals(noise), 'byte-exact');
    await eventually(() => gzipEncoderCounts().idle === before.idle, 30_000, 'the encoder came back to the spares');
    assert.equal(gzipEncoderCounts().reused, before.reused + 1, 'the response took a spare');
    await fetchAllExact(port, 'gzip', 100, 140, 1);
  });

  test('an encoder whose last output met a slow client goes back flowing: the next responses through it complete byte-exact', async () => {
    // Level best: spares of their own, untouched by the other tests.
    const { wrap } = compress(compressOptions.parse({ encodings: ['gzip'], level: 'best' }));
    assert.ok(wrap);
    const before = gzipEncoderCounts();
    for (let n = 0; n < 4; n++) {
      // Every write to this client returns false (its 'drain' comes a turn later): the encoder pauses after its last output too.
      const inner = new Recorded({ slow: true });
      const res = wrap(view, inner);
      res.writeHead(200, undefined, ['content-type', 'text/plain']);
      const body = bodyOf(200 + n);
      for (let at = 0; at < body.length; at += 16_384) {
        if (!res.write(body.subarray(at, at + 16_384))) await new Promise<void>((resolve) => res.once('drain', resolve));
      }
      res.end();
      await eventually(() => inner.writableFinished, 30_000, `response ${n} ended`);
      assert.ok(gunzipSync(await inner.body()).equals(body), `response ${n} byte-exact`);
    }
    const after = gzipEncoderCounts();
    assert.equal(after.made + after.reused - before.made - before.reused, 4);
    assert.ok(after.made - before.made <= 1, 'one encoder for the four responses');
  });

  test('the spares are bounded: 20 responses at once keep SPARE_GZIP encoders and close the rest', async (t) => {
    const waiting: ServerResponse[] = [];
    const serverPort = await startServer(t, (path, res) => {
      if (!path.startsWith('/together/')) return false;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': bodyOf(1000).length });
      res.write(bodyOf(1000).subarray(0, 100));
      waiting.push(res);
      return true;
    });
    const port = await startVelocity(t, serverPort);
    const before = gzipEncoderCounts();
    const agent = new Agent({ keepAlive: true, maxSockets: 20 });
    t.after(() => agent.destroy());
    const all = Array.from({ length: 20 }, (_, i) => fetch(port, `/together/${i}`, 'gzip', agent));
    // Every response holds an encoder at once: then the bodies end.
    await eventually(() => taken() - before.made - before.reused === 20, 30_000, '20 responses compressing at once');
    for (const res of waiting) res.end(bodyOf(1000).subarray(100));
    for (const res of await Promise.all(all)) assert.ok(gunzipSync(res.body).equals(bodyOf(1000)));
    await eventually(() => gzipEncoderCounts().closed - before.closed === 20 - SPARE_GZIP, 30_000, 'the encoders past the spares closed');
    // The 20 took every spare there was (of their level); SPARE_GZIP of them are the spares now.
    const after = gzipEncoderCounts();
    assert.equal(after.idle, before.idle - (after.reused - before.reused) + SPARE_GZIP);
  });
});
