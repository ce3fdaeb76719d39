/**
 * The client response head copied through from a server's head as the upstream
 * parser read it (Http1Response.writeUpstreamHead with the parser's end-to-end
 * lines, what the forwarder uses) is byte for byte the head the general way
 * builds — the parsed list without hop-by-hop and Connection-listed headers
 * (responseHeadersFromRaw) given to writeHead — for every framing the response
 * can take: Content-Length, chunked (decoded and passed through),
 * close-delimited, HEAD/204/304, HTTP/1.0 clients, a closing connection,
 * headers Velocity adds, headers set before the head, lines in any form.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { responseHeadersFromRaw } from '../../src/proxy/headers.ts';
import { findHeadEnd, HeadError, parseRequestHead } from '../../src/proxy/http1/head-parser.ts';
import { Http1Request } from '../../src/proxy/http1/request.ts';
import { Http1Response } from '../../src/proxy/http1/response.ts';
import { SocketWriter } from '../../src/socket-writer.ts';
import type { ResponseHead } from '../../src/upstream/response-parser.ts';
import { parseResponseHead } from '../support/response-head.ts';

/** A socket that keeps what is written to it as latin1 text and takes every write at once. */
function recordingSocket(): { socket: Socket; text: () => string } {
  let text = '';
  const socket = {
    writableLength: 0,
    destroyed: false,
    cork() {},
    uncork() {},
    write(chunk: string | Uint8Array, encoding?: unknown, done?: unknown) {
      text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('latin1');
      const callback = typeof encoding === 'function' ? encoding : done;
      if (typeof callback === 'function') process.nextTick(callback);
      return true;
    },
  };
  return { socket: socket as unknown as Socket, text: () => text };
}

interface Case {
  name: string;
  request?: string;
  status?: number;
  reason?: string;
  /** The server's header fields, written `Name: value`… */
  raw?: string[];
  /** …or its header lines as they are. */
  lines?: string[];
  /** The server's version, 1 unless given. */
  minor?: number;
  extra?: string[];
  stored?: [string, string];
  keepAlive?: boolean;
  framed?: boolean;
  body?: string[];
}

/** The server's head for `c`, read by the upstream response parser. */
function serverHead(c: Case, headRequest: boolean): ResponseHead {
  const status = c.status ?? 200;
  const reason = c.reason ?? 'OK';
  const raw = c.raw ?? [];
  const lines = c.lines ?? raw.flatMap((name, i) => (i % 2 === 0 ? [`${name}: ${raw[i + 1]}`] : []));
  const text = `HTTP/1.${c.minor ?? 1} ${status}${reason ? ` ${reason}` : ''}\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;
  return parseResponseHead(text, headRequest);
}

/** Serves `c` on a fresh response, by the copy-through way or the general one; the bytes the client got. */
function serve(c: Case, copyThrough: boolean): string {
  const bytes = Buffer.from(c.request ?? 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', 'latin1');
  const head = parseRequestHead(bytes, 0, findHeadEnd(bytes, 0, 0), 16384);
  if (head instanceof HeadError) throw new Error(head.reason);
  const { socket, text } = recordingSocket();
  const req = new Http1Request(head, socket, { bodyWanted() {} });
  const res = new Http1Response(req, socket, { mayKeepAlive: () => c.keepAlive ?? true, responseFlushed() {}, writer: new SocketWriter(socket, false) }, head.keepAlive);
  if (c.stored) res.setHeader(c.stored[0], c.stored[1]);
  if (c.framed) res.passChunkFraming();
  const upstream = serverHead(c, req.method === 'HEAD');
  if (copyThrough) res.writeUpstreamHead(upstream, c.extra);
  else res.writeHead(upstream.status, upstream.reason || undefined, [...responseHeadersFromRaw(upstream.headers), ...(c.extra ?? [])]);
  for (const piece of c.body ?? []) res.write(Buffer.from(piece, 'latin1'));
  res.end();
  return text();
}

const DATE = ['Date', 'Tue, 01 Dec 2026 18:00:00 GMT'];
const NGINX = ['Server', 'nginx/1.22.1', ...DATE, 'Content-Type', 'text/plain', 'Content-Length', '19', 'Connection', 'keep-alive'];
const CHUNKED = ['Server', 'app', ...DATE, 'Transfer-Encoding', 'chunked', 'Connection', 'keep-alive'];

const CASES: Case[] = [
  { name: 'nginx keep-alive answer with a small body', raw: NGINX, body: ['hello from backend\n'] },
  { name: 'a body bigger than one small write', raw: ['Content-Length', '5000', ...DATE], body: ['x'.repeat(5000)] },
  { name: 'a body in two writes', raw: ['Content-Length', '6', ...DATE], body: ['abc', 'def'] },
  { name: 'no reason phrase', reason: '', raw: NGINX, body: ['hello from backend\n'] },
  { name: 'the server closes its connection (not the client one)', raw: ['Content-Length', '2', 'Connection', 'close', ...DATE], body: ['ok'] },
  { name: 'chunked, decoded and re-chunked', raw: CHUNKED, body: ['abc', 'defgh'] },
  { name: 'chunked, framing passed through', raw: CHUNKED, framed: true, body: ['3\r\nabc\r\n', '0\r\n\r\n'] },
  { name: 'close-delimited', raw: ['Server', 'old', ...DATE], keepAlive: false, body: ['until close'] },
  { name: 'HEAD', request: 'HEAD / HTTP/1.1\r\nHost: a\r\n\r\n', raw: NGINX },
  { name: '204', status: 204, reason: 'No Content', raw: ['X-A', '1', ...DATE] },
  { name: '304', status: 304, reason: 'Not Modified', raw: ['ETag', '"v1"', 'Content-Length', '100', ...DATE] },
  { name: 'HTTP/1.0 client, keep-alive asked', request: 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n', raw: NGINX, body: ['hello from backend\n'] },
  { name: 'HTTP/1.0 client, chunked answer de-chunked and closed', request: 'GET / HTTP/1.0\r\n\r\n', raw: CHUNKED, body: ['abc'] },
  { name: 'the client connection closes after', raw: NGINX, keepAlive: false, body: ['hello from backend\n'] },
  { name: 'no Date from the server', raw: ['Content-Length', '2'], body: ['ok'] },
  {
    name: 'repeated Set-Cookie and headers Velocity adds',
    raw: ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'Content-Length', '2', ...DATE],
    extra: ['Set-Cookie', 'velocity_sticky=s1', 'X-RateLimit-Remaining', '9'],
    body: ['ok'],
  },
  {
    name: 'all the hop-by-hop headers',
    raw: ['Keep-Alive', 'timeout=5', 'Proxy-Authenticate', 'Basic', 'Trailer', 'x-t', 'Upgrade', 'h2c', 'TE', 'trailers', 'Content-Length', '2', ...DATE],
    body: ['ok'],
  },
  { name: 'a Connection header naming another header', raw: ['Connection', 'X-Secret, keep-alive', 'X-Secret', 's', 'X-Kept', 'k', 'Content-Length', '2', ...DATE], body: ['ok'] },
  { name: 'a header set before the head', stored: ['X-Early', 'e'], raw: NGINX, body: ['hello from backend\n'] },
  { name: 'names in any case', raw: ['CONTENT-LENGTH', '2', 'date', DATE[1] as string, 'CoNnEcTiOn', 'Keep-Alive'], body: ['ok'] },
  {
    name: 'lines not in `Name: value` form',
    lines: ['Server:nginx', 'Date:  Tue, 01 Dec 2026 18:00:00 GMT', 'X-Trailing: v  ', 'X-Tab:\tv', 'X-Empty: ', 'X-None:', 'Content-Length: 2'],
    body: ['ok'],
  },
  {
    name: 'hop-by-hop lines between end-to-end ones',
    lines: ['Keep-Alive: timeout=5', 'Server: a', 'Connection: keep-alive', 'Date: Tue, 01 Dec 2026 18:00:00 GMT', 'Transfer-Encoding: chunked', 'X-A: 1', 'Upgrade: h2c'],
    body: ['abc'],
  },
  { name: 'whitespace after a value', lines: ['X-Trailing: v \t', 'Content-Length: 2'], body: ['ok'] },
  { name: 'an empty Connection field', lines: ['Connection:', 'Content-Length: 2', 'X-A: 1'], body: ['ok'] },
  { name: 'an HTTP/1.0 server', minor: 0, raw: ['Content-Length', '2', ...DATE], body: ['ok'] },
  { name: 'no header at all', lines: [], keepAlive: false, body: ['ok'] },
];

for (const c of CASES) {
  test(`copied-through response head is the general way's, byte for byte: ${c.name}`, () => {
    const general = serve(c, false);
    // A Date the response adds itself could turn to the next second between the two.
    const sameSecond = (s: string) => s.replace(/\r\ndate: [^\r]*/, '\r\ndate: (now)');
    assert.equal(sameSecond(serve(c, true)), sameSecond(general));
    assert.match(general, /^HTTP\/1\.1 \d{3} /);
  });
}

test("the usual answer passes the server's lines on as they are, without its Connection line", () => {
  const head = serverHead({ name: 'nginx', raw: NGINX }, false);
  assert.equal(head.endToEndLines, 'HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 18:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n');
  assert.equal(head.withStatusLine, true);
  assert.equal(head.hasDate, true);
  assert.equal(head.hasContentLength, true);
  const chunked = serverHead({ name: 'chunked', lines: ['Transfer-Encoding: chunked', 'X-A: 1', 'Keep-Alive: timeout=5', 'X-B: 2'] }, false);
  assert.equal(chunked.endToEndLines, 'HTTP/1.1 200 OK\r\nX-A: 1\r\nX-B: 2\r\n');
  // A status line the client response would not write as it is: the lines alone.
  for (const c of [
    { name: 'no reason', reason: '', lines: ['X-A: 1'] },
    { name: 'HTTP/1.0', minor: 0, lines: ['X-A: 1'] },
  ]) {
    const h = serverHead(c, false);
    assert.deepEqual([h.endToEndLines, h.withStatusLine], ['X-A: 1\r\n', false], c.name);
  }
  assert.equal(chunked.hasContentLength, false);
  // Lines a rewrite would change, or a Connection field naming others: the general way.
  assert.equal(serverHead({ name: 'spaced', lines: ['X-A:  1'] }, false).endToEndLines, undefined);
  assert.equal(serverHead({ name: 'listed', lines: ['Connection: X-A', 'X-A: 1'] }, false).endToEndLines, undefined);
});

test("random server heads: the copy-through head is the general way's, byte for byte", () => {
  // A fixed-seed generator: the same heads on every run.
  let seed = 17;
  const next = (n: number) => {
    // xorshift32: its low bits are as random as its high ones.
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const names = [
    'Connection',
    'connection',
    'Keep-Alive',
    'TE',
    'Trailer',
    'Upgrade',
    'Proxy-Authenticate',
    'Expect',
    'HTTP2-Settings',
    'Date',
    'DATE',
    'Content-Length',
    'X-A',
    'Set-Cookie',
    'Server',
    'Vary',
  ];
  const values = ['keep-alive', 'Close', 'X-A', 'x-a, keep-alive', '', '1', 'a b', 'Tue, 01 Dec 2026 18:00:00 GMT', 'caf\u00e9'];
  const spaces = [' ', ' ', ' ', '', '  ', '\t'];
  for (let round = 0; round < 400; round++) {
    const lines: string[] = [];
    let hasLength = false;
    for (let k = next(7); k > 0; k--) {
      let name = names[next(names.length)] as string;
      if (/^content-length$/i.test(name) && hasLength) name = 'X-B';
      const value = /^content-length$/i.test(name) ? '2' : (values[next(values.length)] as string);
      if (/^content-length$/i.test(name)) hasLength = true;
      lines.push(`${name}:${spaces[next(spaces.length)]}${value}${next(8) === 0 ? ' ' : ''}`);
    }
    const c: Case = { name: `random ${round}`, lines, keepAlive: next(4) !== 0, body: ['ok'] };
    const general = serve(c, false).replace(/\r\ndate: [^\r]*/, '\r\ndate: (now)');
    assert.equal(serve(c, true).replace(/\r\ndate: [^\r]*/, '\r\ndate: (now)'), general, JSON.stringify(lines));
  }
});

test('header values Velocity adds are still checked on the copy-through way (no response splitting)', () => {
  assert.throws(() => serve({ name: 'split', raw: NGINX, extra: ['X-Bad', 'a\r\nInjected: 1'] }, true), /invalid character/);
});
