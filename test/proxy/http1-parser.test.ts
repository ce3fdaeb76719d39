/**
 * The HTTP/1.1 request parser of the raw-socket server (src/proxy/http1):
 * every smuggling and framing vector of issue 17 refused with its status, valid
 * heads read exactly, chunked bodies decoded across any split, and a fixed-seed
 * differential run against llhttp (node:http) in which Velocity never accepts
 * what llhttp refuses and agrees with it on what both accept.
 */
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { ChunkedDecoder } from '../../src/proxy/http1/chunked.ts';
import { checkPartialHead, findHeadEnd, HeadError, parseRequestHead, type RequestHead } from '../../src/proxy/http1/head-parser.ts';
import { Http1Request } from '../../src/proxy/http1/request.ts';
import type { ProxyRequest } from '../../src/proxy/proxy-message.ts';
import { checkRequestHead } from '../../src/proxy/request-head.ts';
import { HEAD_LIMIT, LlhttpOracle, runDifferential } from '../support/http1-differential.ts';

function parse(text: string, limit = HEAD_LIMIT): RequestHead | HeadError | 'incomplete' {
  const buf = Buffer.from(text, 'latin1');
  const end = findHeadEnd(buf, 0, 0);
  if (end < 0) return checkPartialHead(buf, 0, 0, limit) ?? 'incomplete';
  return parseRequestHead(buf, 0, end, limit);
}

function refused(text: string, status = 400): void {
  const result = parse(text);
  assert.ok(result instanceof HeadError, `${JSON.stringify(text)} was accepted`);
  assert.equal(result.status, status, `${JSON.stringify(text)}: ${result.reason}`);
}

const get = (headers: string) => `GET / HTTP/1.1\r\nHost: a\r\n${headers}\r\n`;

describe('request heads the parser refuses', () => {
  const vectors: [string, string, number?][] = [
    ['bare LF line ends', 'GET / HTTP/1.1\nHost: a\n\n'],
    ['a bare LF after a good line', 'GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n'],
    ['a bare CR inside a value', get('X-A: b\rTransfer-Encoding: chunked\r\n')],
    ['obs-fold', get('X-Folded: one\r\n two\r\n')],
    ['a header line starting with a tab', get('\tX: y\r\n')],
    ['whitespace before the colon', get('Transfer-Encoding : chunked\r\n')],
    ['a tab before the colon', get('Content-Length\t: 1\r\n')],
    ['a space inside a header name', get('Bad Name: x\r\n')],
    ['a control byte in a header name', get('Bad\x01: x\r\n')],
    ['a NUL in a header value', get('X-A: a\x00b\r\n')],
    ['DEL in a header value', get('X-A: a\x7fb\r\n')],
    ['a vertical tab before the value', get('Transfer-Encoding:\x0bchunked\r\n')],
    ['an empty header name', get(': x\r\n')],
    ['a missing Host on HTTP/1.1', 'GET / HTTP/1.1\r\n\r\n'],
    ['two Host headers', get('Host: b\r\n')],
    ['two equal Content-Length headers', get('Content-Length: 5\r\nContent-Length: 5\r\n')],
    ['two different Content-Length headers', get('Content-Length: 3\r\nContent-Length: 5\r\n')],
    ['a Content-Length list "5, 5"', get('Content-Length: 5, 5\r\n')],
    ['a signed Content-Length', get('Content-Length: +5\r\n')],
    ['a negative Content-Length', get('Content-Length: -1\r\n')],
    ['an empty Content-Length', get('Content-Length:\r\n')],
    ['a Content-Length past 2^53', get('Content-Length: 99999999999999999999\r\n')],
    ['Content-Length with Transfer-Encoding', get('Content-Length: 6\r\nTransfer-Encoding: chunked\r\n')],
    ['Transfer-Encoding before Content-Length', get('Transfer-Encoding: chunked\r\nContent-Length: 3\r\n')],
    ['Transfer-Encoding "chunked, identity"', get('Transfer-Encoding: chunked, identity\r\n')],
    ['Transfer-Encoding "gzip, chunked" (only a lone chunked is taken)', get('Transfer-Encoding: gzip, chunked\r\n')],
    ['Transfer-Encoding "xchunked"', get('Transfer-Encoding: xchunked\r\n')],
    ['Transfer-Encoding "identity"', get('Transfer-Encoding: identity\r\n')],
    ['two Transfer-Encoding headers', get('Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n')],
    ['Transfer-Encoding "chunked" then "cow"', get('Transfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n')],
    ['Transfer-Encoding with a NUL', get('Transfer-Encoding: chunked\x00\r\n')],
    ['Transfer-Encoding in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['a method with a space', 'GE T / HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['a lower-case method (llhttp knows none)', 'get / HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['a mixed-case method "HeAD"', 'HeAD / HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['a mixed-case method "Post"', 'Post / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n'],
    ['a mixed-case method "pUT"', 'pUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n'],
    ['an unknown method', 'BREW / HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['CONNECT', 'CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n', 405],
    ['a NUL in the target', 'GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['a raw non-ASCII byte in the target', 'GET /\xe9 HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['two spaces before the version', 'GET /  HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['userinfo in an absolute-form target', 'GET http://u@evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['an unknown scheme', 'GET htp://a/ HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['an asterisk with more after it', 'OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['a lower-case version', 'GET / http/1.1\r\nHost: a\r\n\r\n'],
    ['a version with two digits', 'GET / HTTP/1.10\r\nHost: a\r\n\r\n'],
    ['HTTP/1.2 (llhttp: an invalid version)', 'GET / HTTP/1.2\r\nHost: a\r\n\r\n'],
    ['HTTP/2.0 (a prior-knowledge h2 client that got the preface wrong)', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505],
    ['HTTP/0.9', 'GET / HTTP/0.9\r\n\r\n', 505],
    ['an unknown expectation', get('Expect: 200-ok\r\n'), 417],
    ['more than 100 header fields', get(Array.from({ length: 101 }, (_, i) => `X-${i}: v\r\n`).join('')), 431],
  ];
  for (const [name, text, status] of vectors) test(name, () => refused(text, status));

  test('an overlong request line is 414 before the head is complete', () => refused(`GET /${'a'.repeat(HEAD_LIMIT)}`, 414));
  test('an overlong header section is 431 before the head is complete', () => refused(`GET / HTTP/1.1\r\nHost: a\r\nX: ${'b'.repeat(HEAD_LIMIT)}`, 431));
  test('a complete head over the limit is 431', () => refused(`GET / HTTP/1.1\r\nHost: a\r\nX: ${'b'.repeat(HEAD_LIMIT)}\r\n\r\n`, 431));
  test('a bare LF is refused before the head is complete (no wait for the header timeout)', () => refused('GET / HTTP/1.1\nHost: a\n', 400));
});

describe('request heads the parser reads', () => {
  test('names keep their case, values lose surrounding whitespace, a tab is optional whitespace', () => {
    const head = parse('POST /p?q=1 HTTP/1.1\r\nHost: a.example\r\nX-Tab:\t v \t\r\nTransfer-Encoding:\tChunked\r\nX-Empty:\r\nX-Obs: \xe9\r\n\r\n') as RequestHead;
    assert.ok(!(head instanceof HeadError) && head !== undefined);
    assert.equal(head.method, 'POST');
    assert.equal(head.target, '/p?q=1');
    assert.deepEqual(head.rawHeaders, ['Host', 'a.example', 'X-Tab', 'v', 'Transfer-Encoding', 'Chunked', 'X-Empty', '', 'X-Obs', '\xe9']);
    assert.equal(head.chunked, true);
    assert.equal(head.contentLength, -1);
    assert.equal(head.keepAlive, true);
  });

  test('common names in any spelling are read as sent, and the request maps each to its lower-case name', () => {
    const head = parse('GET / HTTP/1.1\r\nhOsT: a\r\nUser-Agent: u\r\nuser-agent: v\r\nUSER-AGENT: w\r\nAccept: x\r\nAccepT: y\r\nX-Other: z\r\n\r\n') as RequestHead;
    assert.deepEqual(head.rawHeaders, ['hOsT', 'a', 'User-Agent', 'u', 'user-agent', 'v', 'USER-AGENT', 'w', 'Accept', 'x', 'AccepT', 'y', 'X-Other', 'z']);
    const req = new Http1Request(head, new Socket(), { bodyWanted() {} });
    assert.deepEqual(req.headers, { host: 'a', 'user-agent': 'u', accept: 'x, y', 'x-other': 'z' });
  });

  test('HTTP/1.0 without Host is read; keep-alive only when asked for', () => {
    const plain = parse('GET / HTTP/1.0\r\n\r\n') as RequestHead;
    assert.equal(plain.minor, 0);
    assert.equal(plain.keepAlive, false);
    assert.equal((parse('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n') as RequestHead).keepAlive, true);
    assert.equal((parse('GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n') as RequestHead).keepAlive, false);
  });

  test('Content-Length with leading zeros, Expect: 100-continue, a WebSocket upgrade, absolute-form and asterisk-form targets', () => {
    const head = parse(get('Content-Length: 007\r\nExpect: 100-Continue\r\n')) as RequestHead;
    assert.equal(head.contentLength, 7);
    assert.equal(head.expectContinue, true);
    assert.equal((parse(get('Connection: Upgrade\r\nUpgrade: websocket\r\n')) as RequestHead).upgrade, true);
    assert.equal((parse(get('Upgrade: websocket\r\n')) as RequestHead).upgrade, false);
    assert.equal((parse('GET http://b.example:8080/x?y HTTP/1.1\r\nHost: a\r\n\r\n') as RequestHead).target, 'http://b.example:8080/x?y');
    assert.equal((parse('OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n') as RequestHead).target, '*');
  });

  test('an incomplete head is neither accepted nor refused', () => {
    assert.equal(parse('GET / HTTP/1.1\r\nHost: a\r\n'), 'incomplete');
    assert.equal(parse('GET / HTTP/1.1\r\nHost: a\r'), 'incomplete');
  });

  test('a head is found across packets without searching from its start again', () => {
    const buf = Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal(findHeadEnd(buf, 0, buf.length - 2), buf.length);
    assert.equal(findHeadEnd(buf.subarray(0, buf.length - 1), 0, 10), -1);
  });

  test('a Host value or short target the parser remembers is never given for other bytes of the same length', () => {
    const read = (target: string, host: string) => {
      const head = parse(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nX-A: ${host}\r\n\r\n`) as RequestHead;
      assert.equal(head.target, target);
      assert.deepEqual(head.rawHeaders, ['Host', host, 'X-A', host]);
    };
    read('/a', 'one.example:80');
    read('/a', 'one.example:80');
    // Same lengths, other bytes (the last byte, the first byte): each read as sent, never the remembered one.
    read('/b', 'one.example:81');
    read('/a', 'two.example:81');
    read('/a', 'one.example:80');
    const long = '/a-target-longer-than-twelve';
    read(long, 'one.example:80');
    read(`${long.slice(0, -1)}X`, 'One.example:80');
  });
});

test("the parser's Host check refuses exactly the Host values checkRequestHead's own check refuses", () => {
  // Random values over the bytes the Host grammar treats apart: name bytes, brackets, colon, digits, others.
  let state = 23;
  const next = (n: number) => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state % n;
  };
  const PIECES = ['a', 'Z', '0', '9', '-', '.', '_', '~', '%', '!', "'", '=', '[', ']', ':', 'f', '::1', '1.2.3.4', '@', '/', '#', '?', ' ', '\xe9', '"', '<'];
  const fixed = ['', 'a', 'a:', 'a:80', 'a:123456', '[::1]', '[::1]:8080', '[]', '[::1', '::1', 'a:b', 'a@b', 'a b', '[v1.x]', '[::1]x', '%41'];
  const values = [...fixed, ...Array.from({ length: 20_000 }, () => Array.from({ length: 1 + next(8) }, () => PIECES[next(PIECES.length)]).join(''))];
  for (const value of values) {
    const head = parse(`GET / HTTP/1.1\r\nHost: ${value}\r\n\r\n`);
    if (!(head instanceof Object) || head instanceof HeadError) continue;
    const fromParser = new Http1Request(head, new Socket(), { bodyWanted() {} });
    assert.equal(fromParser.hostChecked !== undefined, true);
    // The same head without the parser's word for it: checkRequestHead runs its own checks.
    const plain = {
      method: 'GET',
      url: '/',
      httpVersion: '1.1',
      httpVersionMajor: 1,
      httpVersionMinor: 1,
      rawHeaders: [...head.rawHeaders],
      headers: { host: head.rawHeaders[1] },
    };
    const expected = checkRequestHead(plain as unknown as ProxyRequest, 'drop')?.message;
    assert.equal(checkRequestHead(fromParser, 'drop')?.message, expected, JSON.stringify(value));
  }
});

/** Decodes a body split at every possible point into two packets; returns the data or the error. */
function decodeSplit(body: string, limit = 1024): string[] {
  const results = new Set<string>();
  const bytes = Buffer.from(body, 'latin1');
  for (let cut = 0; cut <= bytes.length; cut++) {
    const parts: Buffer[] = [];
    const decoder = new ChunkedDecoder({ chunkData: (b, s, e) => parts.push(Buffer.from(b.subarray(s, e))) }, limit);
    let outcome = '';
    for (const [from, to] of [
      [0, cut],
      [cut, bytes.length],
    ] as const) {
      if (outcome) break;
      const at = decoder.decode(bytes, from, to);
      if (at < 0) outcome = `error: ${decoder.error}`;
      else if (decoder.done) outcome = `done at ${at}: ${Buffer.concat(parts).toString('latin1')}`;
    }
    results.add(outcome || `incomplete: ${Buffer.concat(parts).toString('latin1')}`);
  }
  return [...results];
}

test('the end of a head is found where the first CRLFCRLF ends, from any start and any point an earlier call scanned to', () => {
  // A fixed-seed generator over the bytes that matter (CR, LF and two others): every way CRs and LFs can line up.
  let state = 17;
  const next = (n: number) => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state % n;
  };
  const BYTES = [13, 10, 13, 10, 0x41, 0x20];
  const HEAD_END = Buffer.from('\r\n\r\n');
  const reference = (buf: Buffer, from: number) => {
    const at = buf.indexOf(HEAD_END, from);
    return at < 0 ? -1 : at + 4;
  };
  for (let t = 0; t < 100_000; t++) {
    const buf = Buffer.from(Array.from({ length: next(24) }, () => BYTES[next(BYTES.length)] as number));
    const start = next(buf.length + 1);
    // As the connection calls it: `scanned` is the length of an earlier buffer in which no end was found.
    const earlier = start + next(buf.length - start + 1);
    const scanned = reference(buf.subarray(0, earlier), start) < 0 ? earlier : 0;
    const expected = reference(buf, Math.max(start, scanned - 3));
    assert.equal(findHeadEnd(buf, start, scanned), expected, `${JSON.stringify(buf.toString('latin1'))} from ${start}, scanned ${scanned}`);
  }
});

describe('chunked request bodies', () => {
  test('data, extensions and trailers decode the same at every split; the rest stays for the next request', () => {
    assert.deepEqual(decodeSplit('3;a=b;c="d\\"e"\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET'), ['done at 49: abc0123456789']);
    assert.deepEqual(decodeSplit('0\r\n\r\n'), ['done at 5: ']);
  });
  const bad: [string, string][] = [
    ['a size with 13 hex digits', '0000000000001\r\nx\r\n0\r\n\r\n'],
    ['a size overflowing 64 bits', 'fffffffffffffffff1\r\nx\r\n0\r\n\r\n'],
    ['an invalid hex digit', '1g\r\nx\r\n0\r\n\r\n'],
    ['an empty size', '\r\nx\r\n0\r\n\r\n'],
    ['a space after the size', '1 \r\nx\r\n0\r\n\r\n'],
    ['a bare LF after the size', '1\nx\r\n0\r\n\r\n'],
    ['data not followed by CRLF', '3\r\nabcX\r\n0\r\n\r\n'],
    ['an oversized chunk extension', `1;${'a'.repeat(5_000)}\r\nx\r\n0\r\n\r\n`],
    ['an extension with a space', '1;a b\r\nx\r\n0\r\n\r\n'],
    ['an extension without a name', '1;=b\r\nx\r\n0\r\n\r\n'],
    ['a control byte in a quoted extension', '1;a="\x01"\r\nx\r\n0\r\n\r\n'],
    ['obs-fold in the trailers', '0\r\nX-T: 1\r\n more\r\n\r\n'],
    ['a trailer without a colon', '0\r\nX-T\r\n\r\n'],
    ['a NUL in a trailer', '0\r\nX-T: a\x00\r\n\r\n'],
    ['trailers past the size limit', `0\r\nX-T: ${'t'.repeat(2000)}\r\n\r\n`],
    ['a bare LF ending the body', '0\r\n\n'],
  ];
  for (const [name, body] of bad) {
    test(`refused: ${name}`, () => {
      const outcomes = decodeSplit(body);
      for (const o of outcomes) assert.match(o, /^error: /, `${name}: ${outcomes.join(' | ')}`);
    });
  }
});

describe('differential fuzzing against llhttp (fixed seed)', () => {
  const oracle = new LlhttpOracle();
  before(() => oracle.start());
  after(() => oracle.stop());

  test('Velocity never accepts a request llhttp refuses, and frames what both accept identically', async () => {
    const result = await runDifferential(oracle, 0x17, 2_000, Date.now() + 60_000);
    const sample = result.failures.slice(0, 5).map((f) => `#${f.index} ${JSON.stringify(f.bytes)}: ${f.problem}`);
    assert.deepEqual(sample, [], `${result.failures.length} disagreements`);
    assert.equal(result.cases, 2_000);
    // The run means something only when both accept often and Velocity is stricter only sometimes.
    assert.ok(result.bothAccepted > result.cases / 10, `both accepted ${result.bothAccepted} of ${result.cases}`);
  });
});
