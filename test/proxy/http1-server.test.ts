/**
 * Velocity's HTTP/1.1 server end to end, in front of a node:http backend:
 * bodies of 1 MB and 100 MB both ways, framed by Content-Length and chunked,
 * arrive intact (sha256); pipelined requests are answered in order; HTTP/1.0
 * clients get de-chunked, close-delimited bodies; Expect: 100-continue is
 * answered when the body is wanted; HEAD, 204 and 304 carry no body and keep
 * the connection; a client's half-close does not lose its response; idle
 * keep-alive connections close at client.keepalive_timeout. All of it on both socket I/O paths: the
 * one below net's public API (shared-buffer reads, direct handle writes to clients and servers;
 * src/proxy/http1/socket-io.ts, src/socket-writer.ts) and the public one (VELOCITY_SOCKET_IO=public),
 * 100 MB bodies on the first only.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { type Agent, createServer, Agent as HttpAgent, type IncomingMessage, request } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startInProcess } from '../support/velocity.ts';

/** A deterministic body: `size` bytes of a pattern, in 64 KB pieces. */
function* pattern(size: number): Generator<Buffer> {
  const block = Buffer.alloc(65_536);
  for (let i = 0; i < block.length; i++) block[i] = (i * 31 + 7) & 0xff;
  for (let left = size; left > 0; left -= block.length) yield left >= block.length ? block : block.subarray(0, left);
}

function patternSha(size: number): string {
  const hash = createHash('sha256');
  for (const piece of pattern(size)) hash.update(piece);
  return hash.digest('hex');
}

/** Backend: /sha reads the body and answers its sha256 and length; /bytes/N[?chunked] sends the pattern; /status/N answers N. */
async function startBackend(t: { after: (fn: () => unknown) => void }): Promise<string> {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/sha') {
      const hash = createHash('sha256');
      let length = 0;
      for await (const chunk of req) {
        hash.update(chunk as Buffer);
        length += (chunk as Buffer).length;
      }
      res.end(JSON.stringify({ sha: hash.digest('hex'), length, framing: req.headers['transfer-encoding'] ?? `length ${req.headers['content-length']}` }));
      return;
    }
    const bytes = /^\/bytes\/(\d+)$/.exec(url.pathname);
    if (bytes) {
      const size = Number(bytes[1]);
      if (!url.searchParams.has('chunked')) res.setHeader('content-length', size);
      for (const piece of pattern(size)) if (!res.write(piece)) await new Promise((r) => res.once('drain', r));
      res.end();
      return;
    }
    const status = /^\/status\/(\d{3})$/.exec(url.pathname);
    if (status) {
      res.statusCode = Number(status[1]);
      res.setHeader('etag', '"e1"');
      res.end();
      return;
    }
    req.resume();
    res.setHeader('x-path', url.pathname);
    res.end(`path ${url.pathname}\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  sha: string;
  length: number;
  text: string;
}

/** One request through node:http's client; the body is sent as `size` pattern bytes, with Content-Length or chunked. */
function send(agent: Agent, port: number, path: string, options: { method?: string; size?: number; chunked?: boolean } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { host: 'a' };
    if (options.size !== undefined && !options.chunked) headers['content-length'] = options.size;
    const req = request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers, agent }, (res) => {
      const hash = createHash('sha256');
      let length = 0;
      const start: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        hash.update(c);
        length += c.length;
        if (start.length < 4) start.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, sha: hash.digest('hex'), length, text: Buffer.concat(start).toString().slice(0, 500) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (options.size === undefined) return void req.end();
    const pieces = pattern(options.size);
    const pump = () => {
      for (;;) {
        const next = pieces.next();
        if (next.done) return void req.end();
        if (!req.write(next.value)) return void req.once('drain', pump);
      }
    };
    pump();
  });
}

/** Writes raw bytes and collects what comes back until the server closes or `untilText` has arrived. */
function raw(port: number, steps: (socket: Socket, received: () => string) => Promise<void>, untilText?: RegExp): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    let closed = false;
    let settled = false;
    const cap = setTimeout(() => finish(), 20_000);
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(cap);
      socket.destroy();
      resolve({ text, closed });
    };
    socket.on('data', (b: Buffer) => {
      text += b.toString('latin1');
      if (untilText?.test(text)) finish();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('connect', () => steps(socket, () => text).catch(reject));
  });
}

async function until(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Writes `first`, waits until what came back includes `seen`, writes `then`; collects until `untilText`. */
function rawInTwoSteps(port: number, first: string, seen: string, then: string, untilText: RegExp): Promise<{ text: string; closed: boolean }> {
  return raw(
    port,
    async (s, received) => {
      s.write(first);
      await until(() => received().includes(seen), seen);
      s.write(then);
    },
    untilText,
  );
}

for (const io of ['socket internals', 'public'] as const)
  describe(`the HTTP/1.1 server end to end (${io} socket I/O)`, () => {
    let port: number;
    const cleanups: (() => unknown)[] = [];
    // A connection per request: keep-alive reuse across tests would race client.keepalive_timeout (1 s here) on a loaded machine.
    const agent = new HttpAgent({ keepAlive: false });
    before(async () => {
      const t = { after: (fn: () => unknown) => void cleanups.push(fn) };
      // Read when the listener starts and when server connections are made.
      if (io === 'public') process.env.VELOCITY_SOCKET_IO = 'public';
      cleanups.push(() => delete process.env.VELOCITY_SOCKET_IO);
      const backend = await startBackend(t);
      const velocity = await startInProcess(
        t,
        `listen: "127.0.0.1:0"
admin: { enabled: false }
client: { keepalive_timeout: 1s, abort_on_close: false }
services:
  - name: app
    timeouts: { idle: 60s, total: 0 }
    retries: { attempts: 1 }
    servers: [${backend}]
`,
      );
      port = velocity.address.port;
    });
    after(async () => {
      agent.destroy();
      for (const fn of cleanups.reverse()) await fn();
    });

    for (const size of io === 'public' ? [1024 * 1024] : [1024 * 1024, 100 * 1024 * 1024]) {
      const mb = `${size / 1024 / 1024} MB`;
      for (const chunked of [false, true]) {
        const framing = chunked ? 'chunked' : 'Content-Length';
        test(`a ${mb} request body with ${framing} reaches the server intact`, async () => {
          const answer = await send(agent, port, '/sha', { method: 'POST', size, chunked });
          assert.equal(answer.status, 200, answer.text);
          const seen = JSON.parse(answer.text) as { sha: string; length: number };
          assert.equal(seen.length, size);
          assert.equal(seen.sha, patternSha(size));
        });
        test(`a ${mb} response body with ${framing} reaches the client intact`, async () => {
          const answer = await send(agent, port, `/bytes/${size}${chunked ? '?chunked' : ''}`);
          assert.equal(answer.status, 200);
          assert.equal(answer.headers['transfer-encoding'], chunked ? 'chunked' : undefined);
          assert.equal(answer.length, size);
          assert.equal(answer.sha, patternSha(size));
        });
      }
    }

    test('pipelined requests on one connection are answered in order', async () => {
      const heads = ['/one', '/two', '/three', '/four'].map((p) => `GET ${p} HTTP/1.1\r\nHost: a\r\n\r\n`).join('');
      const { text } = await raw(port, async (s) => void s.write(heads), /path \/four\n/);
      const paths = [...text.matchAll(/path (\/\w+)\n/g)].map((m) => m[1]);
      assert.deepEqual(paths, ['/one', '/two', '/three', '/four']);
      assert.equal((text.match(/HTTP\/1\.1 200 /g) ?? []).length, 4);
    });

    test('many pipelined requests sent at once (past the pipelining cap) are all answered', async () => {
      const count = 400;
      const heads = Array.from({ length: count }, (_, i) => `GET /p${i} HTTP/1.1\r\nHost: a\r\nX-Pad: ${'p'.repeat(200)}\r\n\r\n`).join('');
      const { text } = await raw(port, async (s) => void s.write(heads), new RegExp(`path /p${count - 1}\\n`));
      assert.equal([...text.matchAll(/path \/p(\d+)\n/g)].length, count);
    });

    test('an HTTP/1.0 client gets a chunked upstream body de-chunked and the connection closed after it', async () => {
      const { text, closed } = await raw(port, async (s) => void s.write('GET /bytes/100000?chunked HTTP/1.0\r\nHost: a\r\n\r\n'));
      assert.ok(closed);
      const [head, body] = [text.slice(0, text.indexOf('\r\n\r\n')), text.slice(text.indexOf('\r\n\r\n') + 4)];
      assert.match(head, /^HTTP\/1\.1 200 /);
      assert.doesNotMatch(head, /transfer-encoding/i);
      assert.match(head, /connection: close/i);
      assert.equal(body.length, 100_000);
      assert.equal(createHash('sha256').update(Buffer.from(body, 'latin1')).digest('hex'), patternSha(100_000));
    });

    test('an HTTP/1.0 client asking for keep-alive keeps its connection when the body has a length', async () => {
      const { text } = await rawInTwoSteps(
        port,
        'GET /first HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n',
        'path /first',
        'GET /second HTTP/1.0\r\nHost: a\r\n\r\n',
        /path \/second\n/,
      );
      assert.match(text, /connection: keep-alive/i);
      assert.match(text, /path \/first\n[\s\S]*path \/second\n/);
    });

    test('Expect: 100-continue gets 100 Continue before the body is sent, then the answer', async () => {
      const { text } = await rawInTwoSteps(port, 'POST /sha HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n', '100 Continue', 'hello', /"length":5/);
      assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
      assert.match(text, new RegExp(createHash('sha256').update('hello').digest('hex')));
    });

    test('HEAD answers with the length and no body; 204 and 304 carry no body; the connection serves the next request', async () => {
      const { text } = await raw(
        port,
        async (s) =>
          void s.write(
            'HEAD /bytes/5000 HTTP/1.1\r\nHost: a\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: a\r\n\r\nGET /status/304 HTTP/1.1\r\nHost: a\r\n\r\nGET /last HTTP/1.1\r\nHost: a\r\n\r\n',
          ),
        /path \/last\n/,
      );
      const responses = text.split(/(?=HTTP\/1\.1 \d{3} )/);
      assert.equal(responses.length, 4, text);
      assert.match(responses[0] as string, /^HTTP\/1\.1 200 [\s\S]*content-length: 5000\r\n[\s\S]*\r\n\r\n$/i);
      assert.match(responses[1] as string, /^HTTP\/1\.1 204 [\s\S]*\r\n\r\n$/);
      assert.match(responses[2] as string, /^HTTP\/1\.1 304 [\s\S]*etag: "e1"[\s\S]*\r\n\r\n$/i);
      for (const r of responses.slice(0, 3)) assert.doesNotMatch(r, /transfer-encoding/i);
      assert.match(responses[3] as string, /path \/last\n$/);
    });

    test("with abort_on_close: false, a client's half-close after its request does not lose the response", async () => {
      const { text, closed } = await raw(port, async (s) => {
        s.end('GET /half HTTP/1.1\r\nHost: a\r\n\r\n');
      });
      assert.ok(closed);
      assert.match(text, /^HTTP\/1\.1 200 [\s\S]*path \/half\n$/);
    });

    test('an idle keep-alive connection is closed at client.keepalive_timeout', async () => {
      const started = Date.now();
      const { text, closed } = await raw(port, async (s) => void s.write('GET /idle HTTP/1.1\r\nHost: a\r\n\r\n'));
      assert.ok(closed);
      assert.match(text, /path \/idle\n$/);
      assert.ok(Date.now() - started >= 900, 'not before the timeout');
    });
  });
