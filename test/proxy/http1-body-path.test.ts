/**
 * The request body path of the HTTP/1.1 server, through the whole proxy: a
 * request without a body makes no body stream (counted where streams are
 * made, in this process); a chunked body reaches an HTTP/1.1 server with its
 * chunk framing exactly as the client sent it (sizes with their leading
 * zeros, extensions, the last chunk), trailers dropped; where a middleware
 * reads the body, the server gets it decoded with a Content-Length. The same
 * for chunked answers: an HTTP/1.1 client gets the server's chunks, an
 * HTTP/1.0 client the payload alone, a compressing route compresses the payload.
 * Bodies held for retries (Content-Length up to 64 KiB) are copied into buffers given back when the
 * request is done, unless a middleware saw the body: each server gets its own bytes either way.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { bodyBufferCounts } from '../../src/proxy/http1/body-buffers.ts';
import { bodyStreamsMade } from '../../src/proxy/http1/request.ts';
import { startInProcess } from '../support/velocity.ts';

interface Received {
  head: string;
  body: string;
}

/** A server on a raw socket: keeps each request's head and body bytes as they arrived, answers 200 "ok". */
type Cleanup = { after: (fn: () => unknown) => void };

/** A raw TCP server on 127.0.0.1 serving each connection with `serve`; its connections are cut at the test's end. */
async function listenRaw(t: Cleanup, serve: (socket: Socket) => void): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    serve(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function startRawBackend(t: Cleanup): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const url = await listenRaw(t, (socket) => {
    let bytes = '';
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.toString('latin1');
      for (;;) {
        const headEnd = bytes.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const head = bytes.slice(0, headEnd + 4);
        const length = /\r\ncontent-length: *(\d+)/i.exec(head);
        let bodyEnd: number;
        if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
          // Enough for this test's bodies: no trailers reach a server, so the body ends at the last chunk and CRLF.
          const last = bytes.indexOf('\r\n0\r\n\r\n', headEnd + 2);
          const atStart = bytes.startsWith('0\r\n\r\n', headEnd + 4) ? headEnd + 4 : -1;
          if (atStart >= 0) bodyEnd = atStart + 5;
          else if (last >= 0) bodyEnd = last + 7;
          else return;
        } else bodyEnd = headEnd + 4 + (length ? Number(length[1]) : 0);
        if (bytes.length < bodyEnd) return;
        received.push({ head, body: bytes.slice(headEnd + 4, bodyEnd) });
        bytes = bytes.slice(bodyEnd);
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n');
      }
    });
  });
  return { url, received };
}

/** Sends raw bytes on one connection and reads until `count` responses of "ok" arrived. */
function exchange(port: number, bytes: string, count = 1): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    const cap = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no ${count} answers within 30 s; got: ${JSON.stringify(text)}`));
    }, 30_000);
    socket.on('data', (b: Buffer) => {
      text += b.toString('latin1');
      if (text.split('HTTP/1.1 ').length - 1 >= count && text.endsWith('ok\n')) {
        clearTimeout(cap);
        socket.destroy();
        resolve(text);
      }
    });
    socket.on('error', reject);
    socket.write(bytes, 'latin1');
  });
}

test('requests without a body are served without making a body stream; a request with one makes it', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: ["${backend.url}"]\n`);
  const get = 'GET /a HTTP/1.1\r\nhost: a\r\n\r\n';
  const emptyPost = 'POST /b HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n';
  const before = bodyStreamsMade();
  const answers = await exchange(velocity.address.port, get.repeat(5) + emptyPost + get, 7);
  assert.equal(answers.match(/HTTP\/1\.1 200/g)?.length, 7);
  assert.equal(bodyStreamsMade(), before, 'no request of these has a body: none may make a stream');
  await exchange(velocity.address.port, 'POST /c HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello');
  assert.equal(bodyStreamsMade(), before + 1, 'the request with a body reads it through one stream');
  assert.deepEqual(
    backend.received.map((r) => r.body),
    ['', '', '', '', '', '', '', 'hello'],
  );
});

/** `count` POSTs of distinct bodies of `size` bytes, one after another on one connection; their bodies. */
async function postDistinctBodies(port: number, count: number, size: number): Promise<string[]> {
  const bodies: string[] = [];
  for (let i = 0; i < count; i++) {
    const body = String.fromCharCode(97 + (i % 26)).repeat(size - 8) + String(i).padStart(8, '0');
    bodies.push(body);
    await exchange(port, `POST /p${i} HTTP/1.1\r\nhost: a\r\ncontent-length: ${size}\r\n\r\n${body}`);
  }
  return bodies;
}

test('bodies held for retries are copied into buffers reused once each request is done, and every server gets its own bytes', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: ["${backend.url}"]\n`);
  const before = bodyBufferCounts();
  const bodies = [...(await postDistinctBodies(velocity.address.port, 30, 64 * 1024)), ...(await postDistinctBodies(velocity.address.port, 10, 3000))];
  const after = bodyBufferCounts();
  assert.equal(after.givenBack - before.givenBack, 40, 'every body given back once its request is done');
  assert.ok(after.made - before.made <= 2, `${after.made - before.made} body buffers made for 40 requests of two sizes, one at a time`);
  assert.equal(backend.received.length, bodies.length);
  for (const [i, r] of backend.received.entries()) assert.ok(r.body === bodies[i], `request ${i}: the server got other bytes than the client sent`);
});

test('a body a middleware saw is not reused: it may still be held (a mirror, a body read by the middleware)', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(
    t,
    `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    middleware: [{ headers: { request: { set: { x-seen: "yes" } } } }]\n    servers: ["${backend.url}"]\n`,
  );
  const before = bodyBufferCounts().givenBack;
  const bodies = await postDistinctBodies(velocity.address.port, 5, 64 * 1024);
  assert.equal(bodyBufferCounts().givenBack, before, 'no body given back');
  for (const [i, r] of backend.received.entries()) assert.ok(r.body === bodies[i] && r.head.includes('x-seen: yes'), `request ${i}`);
});

test('a chunked body reaches the server with its chunk framing as the client sent it, trailers dropped', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: ["${backend.url}"]\n`);
  const framing = `5;name=value;q="a b"\r\nhello\r\n1\r\n \r\n000a\r\n0123456789\r\n${'4000\r\n'}${'x'.repeat(0x4000)}\r\n0\r\n\r\n`;
  // Sent in small pieces: the framing must not depend on how the bytes were read.
  const socket = connect(velocity.address.port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  let text = '';
  socket.on('data', (b: Buffer) => {
    text += b.toString('latin1');
  });
  const message = `POST /up HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n${framing}`;
  for (let i = 0; i < message.length; i += 777) {
    socket.write(message.slice(i, i + 777), 'latin1');
    await new Promise((resolve) => setImmediate(resolve));
  }
  const deadline = Date.now() + 30_000;
  while (!text.endsWith('ok\n') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  socket.destroy();
  assert.match(text, /^HTTP\/1\.1 200/);
  assert.equal(backend.received.length, 1);
  const [first] = backend.received as [Received];
  assert.match(first.head, /\r\ntransfer-encoding: chunked\r\n/i);
  assert.equal(first.body, framing, 'chunk sizes, extensions and the last chunk arrive byte for byte');

  const withTrailers = await exchange(
    velocity.address.port,
    'POST /t HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-checksum: 1\r\nx-more: 2\r\n\r\n',
  );
  assert.match(withTrailers, /^HTTP\/1\.1 200/);
  assert.equal(backend.received[1]?.body, '3\r\nabc\r\n0\r\n\r\n', 'trailers are dropped, as before');
});

test('a chunked body a middleware reads (body_limit) reaches the server decoded, with its length', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(
    t,
    `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: ["${backend.url}"]\n    middleware:\n      - body_limit: { max: 1kb }\n`,
  );
  const answer = await exchange(velocity.address.port, 'POST /m HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
  assert.match(answer, /^HTTP\/1\.1 200/);
  assert.match(backend.received[0]?.head ?? '', /\r\ncontent-length: 11\r\n/i);
  assert.doesNotMatch(backend.received[0]?.head ?? '', /transfer-encoding/i);
  assert.equal(backend.received[0]?.body, 'hello world');
});

const CHUNKED_ANSWER = `7;src=up\r\n<html>\n\r\n0001\r\nx\r\n${'1000\r\n'}${'y'.repeat(0x1000)}\r\n0\r\nx-trailer: t\r\n\r\n`;

/** A server that answers every request with CHUNKED_ANSWER (chunked, a Content-Type compress takes). */
function startChunkedBackend(t: Cleanup): Promise<string> {
  return listenRaw(t, (socket) => {
    let seen = '';
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
      while (seen.includes('\r\n\r\n')) {
        seen = seen.slice(seen.indexOf('\r\n\r\n') + 4);
        socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ntransfer-encoding: chunked\r\n\r\n${CHUNKED_ANSWER}`, 'latin1');
      }
    });
  });
}

/** Sends one raw request and reads until the connection closes or `done` says the answer is whole. */
function ask(port: number, request: string, done: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    const finish = () => {
      clearTimeout(cap);
      socket.destroy();
      resolve(text);
    };
    const cap = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no whole answer within 30 s; got: ${JSON.stringify(text.slice(0, 300))}`));
    }, 30_000);
    socket.on('data', (b: Buffer) => {
      text += b.toString('latin1');
      if (done(text)) finish();
    });
    socket.on('end', finish);
    socket.on('error', reject);
    socket.write(request, 'latin1');
  });
}

test('a chunked answer reaches an HTTP/1.1 client with the server chunk framing, an HTTP/1.0 client de-chunked, a compressing route decoded', async (t) => {
  const backend = await startChunkedBackend(t);
  const velocity = await startInProcess(
    t,
    `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: ["${backend}"]\n    routes:\n      - name: zipped\n        paths: [/zip]\n        middleware: [{ compress: { types: [text/html], min_size: 1 } }]\n`,
  );
  const port = velocity.address.port;
  const payload = `<html>\nx${'y'.repeat(0x1000)}`;

  const http11 = await ask(port, 'GET / HTTP/1.1\r\nhost: a\r\n\r\n', (text) => text.endsWith('0\r\n\r\n'));
  const body11 = http11.slice(http11.indexOf('\r\n\r\n') + 4);
  assert.match(http11, /\r\ntransfer-encoding: chunked\r\n/i);
  assert.equal(body11, CHUNKED_ANSWER.replace('0\r\nx-trailer: t\r\n\r\n', '0\r\n\r\n'), 'chunk sizes and extensions as the server sent them, trailers dropped');

  const http10 = await ask(port, 'GET / HTTP/1.0\r\nhost: a\r\n\r\n', () => false);
  assert.doesNotMatch(http10, /transfer-encoding/i);
  assert.equal(http10.slice(http10.indexOf('\r\n\r\n') + 4), payload, 'an HTTP/1.0 client gets the payload alone, ended by the close');

  const zipped = await new Promise<{ encoding: string | undefined; body: Buffer }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/zip', headers: { 'accept-encoding': 'gzip' }, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ encoding: res.headers['content-encoding'], body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(zipped.encoding, 'gzip');
  assert.equal(gunzipSync(zipped.body).toString('latin1'), payload, 'compression reads the decoded body');
});
