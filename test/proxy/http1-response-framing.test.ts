/**
 * Every way a response leaves (a lone head, head and body in one write, a large body behind its head,
 * chunks framed by the server, the last chunk) sends the bytes the framing rules give: the head as
 * built, then each body write as it is or in a chunk of its own, then the last chunk — checked on a real
 * socket for random responses against that model. And a head sent before a large body, still queued for
 * a client that does not read, arrives intact after the next response reused the buffer it was copied to.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { findHeadEnd, HeadError, parseRequestHead } from '../../src/proxy/http1/head-parser.ts';
import { Http1Request } from '../../src/proxy/http1/request.ts';
import { Http1Response } from '../../src/proxy/http1/response.ts';
import { SocketWriter } from '../../src/socket-writer.ts';

/** A seeded generator (mulberry32: the same responses every run). */
function random(seed: number): (n: number) => number {
  let x = seed;
  return (n) => {
    x = (x + 0x6d2b79f5) | 0;
    let r = Math.imul(x ^ (x >>> 15), 1 | x);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) % n;
  };
}

/** A body chunk of one of the sizes that take different ways: empty, small, at and past the one-write limit (3 KiB), large. */
function bytes(next: (n: number) => number): Buffer {
  const size = [0, 1, 21, 3072, 3073, 5000, 70_000][next(7)] as number;
  const out = Buffer.allocUnsafe(size);
  for (let k = 0; k < size; k++) out[k] = next(256);
  return out;
}

/** A header value: short (copied in a loop) or long (latin1Write), some characters past latin1 (written as their low byte). */
function value(next: (n: number) => number): string {
  let s = '';
  const length = [1, 15, 16, 40, 900][next(5)] as number;
  for (let k = 0; k < length; k++) s += String.fromCharCode(next(10) === 0 ? 0x100 + next(0xfeff) : 0x20 + next(0x5f));
  return s;
}

/** A connected pair: the server side's socket and writer (what a response writes to), the client side, and everything it received. */
async function pair(t: { after(fn: () => void): void }): Promise<{ socket: Socket; writer: SocketWriter; client: Socket; received: () => Buffer }> {
  const chunks: Buffer[] = [];
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  client.on('data', (chunk: Buffer) => chunks.push(chunk));
  const [socket] = (await once(server, 'connection')) as [Socket];
  t.after(() => {
    client.destroy();
    socket.destroy();
    server.close();
  });
  return { socket, writer: new SocketWriter(socket, true), client, received: () => Buffer.concat(chunks) };
}

function requestOf(text: string, socket: Socket): Http1Request {
  const bytes = Buffer.from(text, 'latin1');
  const head = parseRequestHead(bytes, 0, findHeadEnd(bytes, 0, 0), 16384);
  if (head instanceof HeadError) throw new Error(head.reason);
  return new Http1Request(head, socket, { bodyWanted() {} });
}

async function arrives(received: () => Buffer, expected: Buffer): Promise<void> {
  for (let waited = 0; received().length < expected.length; waited += 20) {
    assert.ok(waited < 60_000, `${expected.length} bytes arrive (${received().length} so far)`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('400 random responses leave byte for byte as the framing rules give (lone heads, small and large bodies, own and passed-on chunk framing)', async (t) => {
  const { socket, writer, received } = await pair(t);
  const next = random(41);
  const owner = { mayKeepAlive: () => true, responseFlushed() {}, writer };
  const expected: Buffer[] = [];
  const ways = new Set<string>();
  for (let n = 0; n < 400; n++) {
    const method = next(5) === 0 ? 'HEAD' : 'GET';
    const http10 = next(5) === 0;
    const req = requestOf(`${method} / HTTP/1.${http10 ? '0\r\nConnection: keep-alive' : '1\r\nHost: a'}\r\n\r\n`, socket);
    const res = new Http1Response(req, socket, owner, true);
    res.sendDate = false;
    const status = [200, 200, 404, 204, 304][next(5)] as number;
    const bodyless = method === 'HEAD' || status === 204 || status === 304;
    const writes = Array.from({ length: next(4) }, () => bytes(next));
    const last = next(3) === 0 ? bytes(next) : undefined;
    const total = writes.reduce((sum, w) => sum + w.length, 0) + (last?.length ?? 0);
    let head: string;
    let chunked = false;
    let framed = false;
    if (writes.length === 0 && last !== undefined && status === 200 && next(2) === 0) {
      // No writeHead: end() gives the whole body its Content-Length.
      head = `HTTP/1.1 200 OK\r\ncontent-length: ${last.length}\r\n${http10 ? 'connection: keep-alive\r\n' : ''}\r\n`;
      ways.add('implicit head');
    } else {
      const headers = ['x-a', value(next)];
      if (next(3) === 0) headers.push('x-b', value(next));
      const withLength = next(2) === 0;
      if (withLength) headers.push('content-length', String(total));
      chunked = !withLength && !bodyless && !http10;
      framed = chunked && next(2) === 0 && res.passChunkFraming();
      res.writeHead(status, 'Some Reason', headers);
      let lines = '';
      for (let k = 0; k < headers.length; k += 2) lines += `${headers[k]}: ${headers[k + 1]}\r\n`;
      const closes = http10 && !withLength && !bodyless;
      head = `HTTP/1.1 ${status} Some Reason\r\n${lines}${chunked ? 'transfer-encoding: chunked\r\n' : ''}${closes ? 'connection: close\r\n' : http10 ? 'connection: keep-alive\r\n' : ''}\r\n`;
    }
    const out: Buffer[] = [Buffer.from(head, 'latin1')];
    // A write that carries its framing already (framed) goes out as given; the response frames the others itself when it chunks.
    const piece = (data: Buffer): Buffer => (framed ? Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`, 'latin1'), data, Buffer.from('\r\n', 'latin1')]) : data);
    const sent = (data: Buffer): void => {
      if (bodyless || data.length === 0) return;
      out.push(chunked && !framed ? Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`, 'latin1'), data, Buffer.from('\r\n', 'latin1')]) : piece(data));
    };
    for (const w of writes) {
      res.write(framed && w.length > 0 ? piece(w) : w);
      sent(w);
    }
    if (framed) {
      // The server's framing ends with its last chunk, given as body bytes too.
      if (last !== undefined && last.length > 0) res.write(piece(last));
      res.end(Buffer.from('0\r\n\r\n', 'latin1'));
      if (last !== undefined) sent(last);
      out.push(Buffer.from('0\r\n\r\n', 'latin1'));
    } else {
      if (last === undefined) res.end();
      else res.end(last);
      if (last !== undefined) sent(last);
    }
    if (chunked && !framed) out.push(Buffer.from('0\r\n\r\n', 'latin1'));
    ways.add(`${bodyless ? 'bodyless' : chunked ? (framed ? 'framed' : 'chunked') : 'length'} ${total > 3072 ? 'large' : total > 0 ? 'small' : 'empty'}`);
    expected.push(...out);
  }
  assert.ok(ways.size >= 9, `the draw took many ways (${[...ways].join(', ')})`);
  const all = Buffer.concat(expected);
  await arrives(received, all);
  assert.equal(received().length, all.length);
  assert.ok(received().equals(all), 'the bytes are those the framing rules give');
});

test('a head sent before a large body, still queued for a client that does not read, arrives intact after the next response reused the buffer', async (t) => {
  const slow = await pair(t);
  const fast = await pair(t);
  const body = Buffer.alloc(5000, 0x62);
  const respond = (to: { socket: Socket; writer: SocketWriter }, which: string): void => {
    const req = requestOf('GET / HTTP/1.1\r\nHost: a\r\n\r\n', to.socket);
    const res = new Http1Response(req, to.socket, { mayKeepAlive: () => true, responseFlushed() {}, writer: to.writer }, true);
    res.sendDate = false;
    res.writeHead(200, 'OK', ['content-length', String(body.length), 'x-which', which]);
    res.end(body);
  };
  // The slow client reads nothing until the responses were written: the kernel's buffers fill.
  slow.client.pause();
  const filler = Buffer.alloc(1024 * 1024, 0x2e);
  let filled = 0;
  while (slow.writer.write(filler)) filled += filler.length;
  filled += filler.length;
  respond(slow, 'first-response');
  assert.ok(slow.writer.pendingBytes > 0, 'the first response is queued');
  // A head of the same length, other bytes: copied where the first one's head would still be.
  respond(fast, 'other-response');
  slow.client.resume();
  const answer = (which: string) => Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nx-which: ${which}\r\n\r\n`, 'latin1'), body]);
  const expected = Buffer.concat([Buffer.alloc(filled, 0x2e), answer('first-response')]);
  await arrives(fast.received, answer('other-response'));
  assert.ok(fast.received().equals(answer('other-response')));
  await arrives(slow.received, expected);
  assert.ok(slow.received().equals(expected), 'the queued response arrives as it was written');
});
