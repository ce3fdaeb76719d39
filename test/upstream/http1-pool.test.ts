/**
 * The upstream pool end to end, through Velocity in this process: bodies of 1 MB
 * and 100 MB both ways with Content-Length and chunked framing (sha256 compared),
 * a slow reader of a huge body (bounded buffering), a server that reads a huge
 * request body slowly (the client is paused, not buffered), HEAD, 204/304, 1xx,
 * close-delimited bodies, bytes past a response's framing, a server that closes
 * a keep-alive connection just as a request is sent, and an answer that arrives
 * before the request body ends.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, Agent as NodeAgent, request } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { describe, type TestContext, test } from 'node:test';
import { liveBuffers } from '../support/retained.ts';
import { eventually, startInProcess, untilSteady } from '../support/velocity.ts';

const MB = 1024 * 1024;

/** A fixed 1 MB block of pseudo-random bytes: bodies are repeats of it, so both ends can hash without holding them. */
const BLOCK = (() => {
  const b = Buffer.alloc(MB);
  let x = 12345;
  for (let i = 0; i < b.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
})();

function expectedSha(bytes: number): string {
  const hash = createHash('sha256');
  for (let left = bytes; left > 0; left -= BLOCK.length) hash.update(left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left));
  return hash.digest('hex');
}

/** Writes `bytes` of the pattern with backpressure; `onWritten` sees the running count. */
function writePattern(out: { write(b: Buffer): boolean; once(e: 'drain', f: () => void): unknown; end(): unknown }, bytes: number, onWritten?: (n: number) => void): void {
  let sent = 0;
  const step = 64 * 1024;
  const pump = () => {
    while (sent < bytes) {
      const n = Math.min(step, bytes - sent);
      const at = sent % BLOCK.length;
      const piece = at + n <= BLOCK.length ? BLOCK.subarray(at, at + n) : Buffer.concat([BLOCK.subarray(at), BLOCK.subarray(0, n - (BLOCK.length - at))]);
      sent += n;
      onWritten?.(sent);
      if (!out.write(piece)) {
        out.once('drain', pump);
        return;
      }
    }
    out.end();
  };
  pump();
}

/** A node:http backend: GET /bytes/N[/chunked] sends the pattern; POST /hash answers the sha256 and size of the body. */
async function startHashBackend(t: TestContext): Promise<{ url: string; connections: () => number; written: () => number }> {
  let connections = 0;
  let written = 0;
  const server = createHttpServer((req, res) => {
    const m = /^\/bytes\/(\d+)(\/chunked)?$/.exec(req.url ?? '');
    if (m) {
      const n = Number(m[1]);
      res.writeHead(200, m[2] ? { 'content-type': 'application/octet-stream' } : { 'content-length': String(n) });
      if (req.method === 'HEAD') return res.end();
      writePattern(res, n, (w) => {
        written = w;
      });
      return;
    }
    if (req.url === '/hash') {
      const hash = createHash('sha256');
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        hash.update(c);
      });
      req.on('end', () => res.end(JSON.stringify({ sha: hash.digest('hex'), size, chunked: req.headers['transfer-encoding'] === 'chunked' })));
      return;
    }
    if (req.url === '/no-content') return res.writeHead(204).end();
    if (req.url === '/not-modified') return res.writeHead(304, { etag: '"v1"' }).end();
    if (req.url === '/hints') {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      return res.end('after hints');
    }
    res.writeHead(404).end();
  });
  server.on('connection', () => connections++);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  t.after(() => server.closeAllConnections());
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, connections: () => connections, written: () => written };
}

async function proxyTo(t: TestContext, url: string, extra = ''): Promise<number> {
  const velocity = await startInProcess(t, `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: [${url}]\n${extra}`);
  return velocity.address.port;
}

interface Answer {
  res: IncomingMessage;
  sha: string;
  size: number;
  text: string;
}

/** One request through a fresh keep-alive agent (or the one given), body hashed as it streams. */
function send(port: number, path: string, init: { method?: string; agent?: NodeAgent; upload?: { bytes: number; chunked: boolean } } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (init.upload && !init.upload.chunked) headers['content-length'] = String(init.upload.bytes);
    const req = request({ host: '127.0.0.1', port, path, method: init.method ?? 'GET', headers, agent: init.agent ?? false }, (res) => {
      const hash = createHash('sha256');
      let size = 0;
      const text: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        size += c.length;
        hash.update(c);
        if (text.length < 4) text.push(c);
      });
      res.on('end', () => resolve({ res, sha: hash.digest('hex'), size, text: Buffer.concat(text).toString('latin1') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (init.upload) writePattern(req, init.upload.bytes);
    else req.end();
  });
}

describe('bodies both ways, sha256 compared', () => {
  for (const size of [1 * MB, 100 * MB]) {
    for (const chunked of [false, true]) {
      const label = `${size / MB} MB ${chunked ? 'chunked' : 'with Content-Length'}`;
      test(`download of ${label} arrives intact`, async (t) => {
        const backend = await startHashBackend(t);
        const port = await proxyTo(t, backend.url);
        const got = await send(port, `/bytes/${size}${chunked ? '/chunked' : ''}`);
        assert.equal(got.res.statusCode, 200);
        assert.equal(got.size, size);
        assert.equal(got.sha, expectedSha(size));
        assert.equal(got.res.headers['content-length'], chunked ? undefined : String(size));
      });
      test(`upload of ${label} arrives intact`, async (t) => {
        const backend = await startHashBackend(t);
        const port = await proxyTo(t, backend.url);
        const got = await send(port, '/hash', { method: 'POST', upload: { bytes: size, chunked } });
        assert.equal(got.res.statusCode, 200);
        const answer = JSON.parse(got.text) as { sha: string; size: number; chunked: boolean };
        assert.deepEqual(answer, { sha: expectedSha(size), size, chunked });
      });
    }
  }
});

test('a slow reader of a 256 MB body holds the server back: what is buffered between them stays bounded, and the body arrives intact', async (t) => {
  const backend = await startHashBackend(t);
  const port = await proxyTo(t, backend.url);
  const size = 256 * MB;
  const rssBefore = process.memoryUsage().rss;
  const answer = new Promise<{ sha: string; size: number }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: `/bytes/${size}`, agent: false }, (res) => {
      res.pause();
      const hash = createHash('sha256');
      let got = 0;
      // Not reading: the server must stall once the sockets and the proxy's buffers are full.
      let last = -1;
      eventually(
        () => {
          const now = backend.written();
          const still = now === last && now > 0;
          last = now;
          return still;
        },
        60_000,
        'the server stalls while the client does not read',
        500,
      )
        .then(() => {
          const buffered = backend.written() - got;
          assert.ok(buffered < 24 * MB, `${(buffered / MB).toFixed(1)} MB written by the server but not read by the client`);
          assert.ok(process.memoryUsage().rss - rssBefore < 128 * MB, 'memory does not grow with the body');
          res.on('data', (c: Buffer) => {
            got += c.length;
            hash.update(c);
          });
          res.on('end', () => resolve({ sha: hash.digest('hex'), size: got }));
          res.resume();
        })
        .catch(reject);
    });
    req.on('error', reject);
    req.end();
  });
  const done = await answer;
  assert.equal(done.size, size);
  assert.equal(done.sha, expectedSha(size));
});

/**
 * A server that reads the request head, then stops reading the body until `resume()`; after that it reads
 * the rest, hashes it, and answers its sha256 and size. Raw net, so nothing in a library reads for it.
 */
async function startStallingBackend(t: TestContext, bodyBytes: number): Promise<{ url: string; stalled: Promise<void>; resume: () => void }> {
  const sockets = new Set<Socket>();
  let resume = (): void => undefined;
  let headRead = (): void => undefined;
  const stalled = new Promise<void>((r) => {
    headRead = r;
  });
  const server = createNetServer((socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    let head = Buffer.alloc(0);
    let headDone = false;
    const hash = createHash('sha256');
    let size = 0;
    const body = (c: Buffer) => {
      size += c.length;
      hash.update(c);
      if (size === bodyBytes) socket.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${JSON.stringify({ sha: hash.digest('hex'), size })}`);
    };
    socket.on('data', (c: Buffer) => {
      if (headDone) return body(c);
      head = Buffer.concat([head, c]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      headDone = true;
      // The head is in: stop reading, so the body backs up in the kernel and then (if Velocity holds back) at the client.
      socket.pause();
      resume = () => socket.resume();
      headRead();
      if (end + 4 < head.length) body(head.subarray(end + 4));
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  // A paused connection never ends by itself (a failed test leaves one): destroyed, or close() would wait for it.
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, stalled, resume: () => resume() };
}

test('a server that reads a 256 MB request body slowly holds the client back: Velocity pauses the client instead of buffering the body, and it arrives intact', async (t) => {
  const size = 256 * MB;
  const buffersBefore = await liveBuffers();
  const backend = await startStallingBackend(t, size);
  const port = await proxyTo(t, backend.url);
  let handed = 0;
  let sent = (): number => 0;
  const answer = new Promise<{ status: number | undefined; text: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/upload', method: 'POST', headers: { 'content-length': String(size) }, agent: false }, (res) => {
      const text: Buffer[] = [];
      res.on('data', (c: Buffer) => text.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(text).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    // Ended if the test fails before the answer, so no upload outlives it.
    t.after(() => req.destroy());
    writePattern(req, size, (n) => {
      handed = n;
    });
    // What the client got out: handed to write(), less what still waits in its own stream (a piece or two).
    sent = () => handed - req.writableLength;
  });
  await backend.stalled;
  // Wait until the client's writes stall: the count unchanged over a second (the kernel buffers on both hops are full).
  await untilSteady(sent, 'the client stalls while the server does not read');
  const out = sent();
  // Kernel buffers on loopback held 8 MB here (two hops); a quarter of the body leaves room for bigger ones.
  assert.ok(out < size / 4, `${(out / MB).toFixed(1)} MB of ${size / MB} MB left the client while the server read nothing`);
  // And none of it waits in Velocity (in this process): the client's pending writes are views of BLOCK,
  // so what grew is what Velocity holds. Measured 3 MB; 255 MB when Velocity reads the client regardless.
  const held = (await liveBuffers()) - buffersBefore;
  assert.ok(held < 16 * MB, `${(held / MB).toFixed(1)} MB more in live Buffers while the body waits`);
  backend.resume();
  const got = await answer;
  assert.equal(got.status, 200);
  assert.deepEqual(JSON.parse(got.text), { sha: expectedSha(size), size });
});

describe('responses without a body', () => {
  test('HEAD, 204 and 304 carry no body and leave the server connection reusable', async (t) => {
    const backend = await startHashBackend(t);
    const port = await proxyTo(t, backend.url);
    const agent = new NodeAgent({ keepAlive: true, maxSockets: 1 });
    t.after(() => agent.destroy());
    const head = await send(port, `/bytes/${5 * MB}`, { method: 'HEAD', agent });
    assert.equal(head.res.statusCode, 200);
    assert.equal(head.res.headers['content-length'], String(5 * MB));
    assert.equal(head.size, 0);
    const empty = await send(port, '/no-content', { agent });
    assert.equal(empty.res.statusCode, 204);
    assert.equal(empty.size, 0);
    const notModified = await send(port, '/not-modified', { agent });
    assert.equal(notModified.res.statusCode, 304);
    assert.equal(notModified.res.headers.etag, '"v1"');
    const after = await send(port, '/bytes/10', { agent });
    assert.equal(after.sha, expectedSha(10));
    assert.equal(backend.connections(), 1, 'all four went over one server connection');
  });

  test('103 Early Hints from the server reach the client before the response', async (t) => {
    const backend = await startHashBackend(t);
    const port = await proxyTo(t, backend.url);
    const hints: { status: number; link: unknown }[] = [];
    const text = await new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/hints', agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c;
        });
        res.on('end', () => resolve(body));
      });
      req.on('information', (info) => hints.push({ status: info.statusCode, link: info.headers.link }));
      req.on('error', reject);
      req.end();
    });
    assert.equal(text, 'after hints');
    assert.deepEqual(hints, [{ status: 103, link: '</style.css>; rel=preload; as=style' }]);
  });
});

/** A raw backend whose answer to each request on a connection is chosen by `answer(n, socket, head)`, n counting from 0 per connection. */
async function startScriptedBackend(
  t: TestContext,
  answer: (n: number, socket: Socket, head: string) => void,
): Promise<{ url: string; connections: () => number; closed: () => number }> {
  let connections = 0;
  let closed = 0;
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    connections++;
    sockets.add(socket);
    let n = 0;
    let seen = '';
    socket.on('data', (chunk) => {
      seen += chunk.toString('latin1');
      for (let end = seen.indexOf('\r\n\r\n'); end >= 0; end = seen.indexOf('\r\n\r\n')) {
        const head = seen.slice(0, end);
        seen = seen.slice(end + 4);
        const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (!/transfer-encoding/i.test(head)) seen = seen.slice(length);
        answer(n++, socket, head);
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      closed++;
      sockets.delete(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, connections: () => connections, closed: () => closed };
}

describe('framing decided by the server', () => {
  test('a close-delimited body reaches the client whole, with Connection: close', async (t) => {
    const backend = await startScriptedBackend(t, (_n, socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the server closes'));
    const port = await proxyTo(t, backend.url);
    const got = await send(port, '/');
    assert.equal(got.res.statusCode, 200);
    assert.equal(got.text, 'until the server closes');
    assert.equal(got.res.headers.connection, 'close');
  });

  test('a server that sends bytes past a response is never asked again on that connection', async (t) => {
    const backend = await startScriptedBackend(t, (_n, socket) =>
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled'),
    );
    const port = await proxyTo(t, backend.url);
    const agent = new NodeAgent({ keepAlive: true, maxSockets: 1 });
    t.after(() => agent.destroy());
    const first = await send(port, '/a', { agent });
    const second = await send(port, '/b', { agent });
    assert.deepEqual([first.text, second.text], ['ok', 'ok']);
    assert.equal(backend.connections(), 2, 'the second request went over a new connection');
  });
});

describe('total and per-try timeouts, on the deadline sweep', () => {
  /** One GET through Velocity (with `service` lines) to a server that reads requests and never answers. */
  async function unanswered(t: TestContext, service: string): Promise<{ got: Answer; elapsed: number }> {
    const backend = await startScriptedBackend(t, () => undefined);
    const port = await proxyTo(t, backend.url, service);
    const started = performance.now();
    const got = await send(port, '/frozen');
    return { got, elapsed: performance.now() - started };
  }

  test('the total timeout ends a request a server never answers: 504, not before the timeout', async (t) => {
    const { got, elapsed } = await unanswered(t, '    timeouts: { total: 300ms }\n    retries: { attempts: 1 }\n');
    assert.equal(got.res.statusCode, 504, got.text);
    assert.equal(got.res.headers['x-velocity-error'], 'UPSTREAM_TIMEOUT');
    assert.ok(elapsed >= 300, `answered after ${elapsed} ms`);
  });

  test('the per-try timeout ends a try a server never answers: 504, not before the timeout', async (t) => {
    const { got, elapsed } = await unanswered(t, '    retries: { attempts: 1, per_try_timeout: 200ms }\n');
    assert.equal(got.res.statusCode, 504, got.text);
    assert.ok(elapsed >= 200, `answered after ${elapsed} ms`);
  });

  test('requests waiting on their timeouts hold no timer each', async (t) => {
    let seen = 0;
    const counting = await startScriptedBackend(t, () => {
      seen++;
    });
    const port = await proxyTo(t, counting.url, '    timeouts: { total: 60s }\n    retries: { attempts: 1, per_try_timeout: 50s }\n');
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const requests = Array.from({ length: 20 }, (_, i) => {
      const req = request({ host: '127.0.0.1', port, path: `/wait-${i}`, agent: false });
      req.on('error', () => undefined);
      req.end();
      return req;
    });
    t.after(() => {
      for (const req of requests) req.destroy();
    });
    await eventually(() => seen >= 20, 30_000, 'the server got all twenty requests');
    // A timer per request and per try would be forty more; the sweep is one for all.
    assert.ok(timers() - before < 5, `${timers() - before} more timers with twenty requests waiting`);
  });
});

describe('keep-alive races', () => {
  /** Answers the first request on a connection, then closes it when the next one arrives (unanswered). */
  const closesOnSecond = (n: number, socket: Socket) => {
    if (n === 0) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh');
    else socket.destroy();
  };

  test('a GET sent on a keep-alive connection the server just closed is sent again on a new one, without a retry', async (t) => {
    const backend = await startScriptedBackend(t, closesOnSecond);
    const port = await proxyTo(t, backend.url, '    retries: { attempts: 1 }\n');
    for (let i = 0; i < 3; i++) {
      const got = await send(port, `/${i}`);
      assert.equal(got.res.statusCode, 200, `request ${i}: ${got.text}`);
      assert.equal(got.text, 'fresh');
    }
  });

  test('a POST whose body went out on such a connection is not sent again: 502', async (t) => {
    const backend = await startScriptedBackend(t, closesOnSecond);
    const port = await proxyTo(t, backend.url, '    retries: { attempts: 1 }\n');
    const first = await send(port, '/hash', { method: 'POST', upload: { bytes: 10, chunked: false } });
    assert.equal(first.res.statusCode, 200);
    const second = await send(port, '/hash', { method: 'POST', upload: { bytes: 10, chunked: false } });
    assert.equal(second.res.statusCode, 502);
    assert.equal(second.res.headers['x-velocity-error'], 'UPSTREAM_RESET');
    assert.equal(backend.connections(), 1, 'no second connection carried the POST again');
  });

  test('a GET whose answer had begun on such a connection is not sent again: 502', async (t) => {
    // The second request on a connection gets the first bytes of a head, then the connection closes: the
    // server saw the request, so sending it again could run it twice.
    const backend = await startScriptedBackend(t, (n, socket) => {
      if (n === 0) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh');
      else socket.end('HTTP/1.1 200 O');
    });
    const port = await proxyTo(t, backend.url, '    retries: { attempts: 1 }\n');
    const first = await send(port, '/a');
    assert.equal(first.res.statusCode, 200);
    const second = await send(port, '/b');
    assert.equal(second.res.statusCode, 502, second.text);
    assert.equal(backend.connections(), 1, 'no second connection carried the GET again');
  });

  test('an answer that arrives before the request body ends closes both sides', async (t) => {
    const backend = await startScriptedBackend(t, (_n, socket) => socket.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!'));
    const port = await proxyTo(t, backend.url);
    const got = await new Promise<{ status: number | undefined; connection: unknown; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/upload', method: 'POST', agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode, connection: res.headers.connection, body }));
      });
      req.on('error', reject);
      // A chunked body that is still being sent when the answer comes: a first piece, then nothing more.
      req.write(Buffer.alloc(16 * 1024, 1));
    });
    assert.deepEqual(got, { status: 413, connection: 'close', body: 'big!' });
    await eventually(() => backend.closed() === 1, 10_000, 'the server connection is closed, not kept for another request');
  });
});
