/**
 * HTTP/1.1 request smuggling and malformed framing, over raw sockets, against
 * Velocity in front of a raw TCP backend that frames what it receives strictly.
 * For every vector: Velocity answers 4xx or closes, the backend never sees a
 * request it could frame differently from Velocity, nothing pipelined behind a
 * bad request reaches it, and the next request on the backend connection is clean.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Velocity } from '../../src/runtime/instance.ts';
import { startInProcess } from '../support/velocity.ts';
import { OK_RESPONSE, type RawBackend, rawExchange, startRawBackend } from './raw-http.ts';

/** Cleanups registered while a describe's `before` runs, run by that describe's `after`. */
function suiteCleanup(): { after: (fn: () => unknown) => void } {
  const fns: (() => unknown)[] = [];
  after(async () => {
    for (const fn of fns.reverse()) await fn();
  });
  return { after: (fn) => void fns.push(fn) };
}

const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n';

interface Vector {
  name: string;
  bytes: string;
  /** 'reject': answered 4xx (or closed) without reaching the backend. 'forward': legal, reaches the backend framed one way only. */
  expect: 'reject' | 'forward';
  /** For 'reject': the status (or the statuses allowed) instead of any 4xx. */
  status?: number | number[];
  /** For 'forward': what the first request looks like at the backend. */
  backendSees?: { requestLine: string; host: string };
}

const post = (headers: string, body: string) => `POST /vector HTTP/1.1\r\nHost: a\r\n${headers}\r\n${body}`;

const VECTORS: Vector[] = [
  {
    name: 'CL.TE smuggling (Linhart et al. 2005; Kettle 2019): Content-Length and Transfer-Encoding: chunked together',
    bytes: post('Content-Length: 6\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\nG'),
    expect: 'reject',
  },
  {
    name: 'TE.CL smuggling (Kettle 2019): Transfer-Encoding before a short Content-Length',
    bytes: post('Transfer-Encoding: chunked\r\nContent-Length: 3\r\n', '8\r\nSMUGGLED\r\n0\r\n\r\n'),
    expect: 'reject',
  },
  { name: 'duplicate Content-Length with different values (Linhart et al. 2005)', bytes: post('Content-Length: 3\r\nContent-Length: 5\r\n', 'abcde'), expect: 'reject' },
  {
    name: 'duplicate Content-Length with equal values (RFC 9112 §6.3: a proxy must not forward as-is)',
    bytes: post('Content-Length: 5\r\nContent-Length: 5\r\n', 'abcde'),
    expect: 'reject',
  },
  { name: 'comma-joined Content-Length "5, 5" (RFC 9110 §8.6 list form; Linhart et al. 2005)', bytes: post('Content-Length: 5, 5\r\n', 'abcde'), expect: 'reject' },
  { name: 'Content-Length with a sign "+5" (parser differential, Kettle 2019)', bytes: post('Content-Length: +5\r\n', 'abcde'), expect: 'reject' },
  { name: 'TE.TE "Transfer-Encoding: chunked, identity" — chunked not last (Kettle 2019)', bytes: post('Transfer-Encoding: chunked, identity\r\n', '0\r\n\r\n'), expect: 'reject' },
  { name: 'TE.TE "Transfer-Encoding: xchunked" (Kettle 2019 obfuscation list)', bytes: post('Transfer-Encoding: xchunked\r\n', '0\r\n\r\n'), expect: 'reject' },
  {
    name: 'TE.TE space before colon "Transfer-Encoding : chunked" (Kettle 2019; RFC 9112 §5.1 says reject)',
    bytes: post('Transfer-Encoding : chunked\r\n', '0\r\n\r\n'),
    expect: 'reject',
  },
  {
    name: 'TE.TE leading space on the header line " Transfer-Encoding: chunked" (Kettle 2019)',
    bytes: post('X: y\r\n Transfer-Encoding: chunked\r\n', '0\r\n\r\n'),
    expect: 'reject',
  },
  {
    name: 'TE.TE two Transfer-Encoding headers "chunked" and "cow" (Kettle 2019)',
    bytes: post('Transfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n', '0\r\n\r\n'),
    expect: 'reject',
  },
  { name: 'TE.TE vertical tab before chunked "Transfer-Encoding:\\x0bchunked" (Kettle 2019)', bytes: post('Transfer-Encoding:\x0bchunked\r\n', '0\r\n\r\n'), expect: 'reject' },
  {
    name: 'TE.TE "Transfer-Encoding: chunked" with trailing garbage "chunked\\x00" — NUL byte (Kettle 2019)',
    bytes: post('Transfer-Encoding: chunked\x00\r\n', '0\r\n\r\n'),
    expect: 'reject',
  },
  {
    name: 'tab as optional whitespace "Transfer-Encoding:\\tchunked" is legal (RFC 9110 §5.6.3) and forwarded as one chunked request',
    bytes: post('Transfer-Encoding:\tchunked\r\n', '3\r\nabc\r\n0\r\n\r\n'),
    expect: 'forward',
  },
  {
    name: 'TE.TE tab after chunked "Transfer-Encoding: chunked\\t" (llhttp refuses it; a parser that trims the tab reads chunked)',
    bytes: post('Transfer-Encoding: chunked\t\r\n', '0\r\n\r\n'),
    expect: 'reject',
  },
  {
    name: 'obs-fold continuation line (RFC 9112 §5.2: a proxy must reject or replace; Kettle 2019)',
    bytes: 'GET /vector HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n',
    expect: 'reject',
  },
  { name: 'bare LF line endings (RFC 9112 §2.2; Kettle 2021 "HTTP/2: the sequel is always worse" LF tricks)', bytes: 'GET /vector HTTP/1.1\nHost: a\n\n', expect: 'reject' },
  { name: 'bare CR inside a header value (RFC 9112 §2.2)', bytes: 'GET /vector HTTP/1.1\r\nHost: a\r\nX-A: b\rTransfer-Encoding: chunked\r\n\r\n', expect: 'reject' },
  { name: 'invalid header name with a space "Bad Name: x" (RFC 9110 §5.1 token)', bytes: 'GET /vector HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n', expect: 'reject' },
  { name: 'invalid header name with a control byte (RFC 9110 §5.1 token)', bytes: 'GET /vector HTTP/1.1\r\nHost: a\r\nBad\x01: x\r\n\r\n', expect: 'reject' },
  { name: 'NUL byte in a header value (RFC 9110 §5.5)', bytes: 'GET /vector HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n', expect: 'reject' },
  { name: 'NUL byte in the request target', bytes: 'GET /vec\x00tor HTTP/1.1\r\nHost: a\r\n\r\n', expect: 'reject' },
  {
    name: 'oversized chunk extension (CVE-2024-22019, Node "chunk extension" limit)',
    bytes: post('Transfer-Encoding: chunked\r\n', `1;${'a'.repeat(100_000)}\r\nx\r\n0\r\n\r\n`),
    expect: 'reject',
  },
  { name: 'chunk size with an invalid hex digit (Kettle 2019 chunk-size differentials)', bytes: post('Transfer-Encoding: chunked\r\n', '1g\r\nx\r\n0\r\n\r\n'), expect: 'reject' },
  {
    name: 'chunk size overflowing 64 bits (Kettle 2019 chunk-size differentials)',
    bytes: post('Transfer-Encoding: chunked\r\n', 'fffffffffffffffff1\r\nx\r\n0\r\n\r\n'),
    expect: 'reject',
  },
  { name: 'chunk data not followed by CRLF (Kettle 2019)', bytes: post('Transfer-Encoding: chunked\r\n', '3\r\nabcX\r\n0\r\n\r\n'), expect: 'reject' },
  {
    name: 'HTTP/1.0 request with Transfer-Encoding (RFC 9112 §6.1: treat as faulty framing)',
    bytes: 'POST /vector HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n',
    expect: 'reject',
  },
  { name: 'CONNECT target to another host (open-proxy abuse)', bytes: 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n', expect: 'reject' },
  {
    name: 'absolute-form target naming another authority than Host is sent as origin-form with that authority as Host (RFC 9112 §3.2.2; routing confusion, Kettle 2017 "Cracking the lens")',
    bytes: 'GET http://other.example/vector?q=1 HTTP/1.1\r\nHost: a\r\n\r\n',
    expect: 'forward',
    backendSees: { requestLine: 'GET /vector?q=1 HTTP/1.1', host: 'other.example' },
  },
  {
    name: 'absolute-form target with userinfo "http://a@evil/" (RFC 9110 §4.2.4 forbids userinfo)',
    bytes: 'GET http://a@evil.example/vector HTTP/1.1\r\nHost: a\r\n\r\n',
    expect: 'reject',
  },
  { name: 'asterisk-form target on GET (only OPTIONS may use it, RFC 9112 §3.2.4)', bytes: 'GET * HTTP/1.1\r\nHost: a\r\n\r\n', expect: 'reject' },
  { name: 'missing Host on HTTP/1.1 (RFC 9112 §3.2)', bytes: 'GET /vector HTTP/1.1\r\n\r\n', expect: 'reject' },
  { name: 'two Host headers (RFC 9112 §3.2; Kettle 2017 host-header attacks)', bytes: 'GET /vector HTTP/1.1\r\nHost: a\r\nHost: evil.example\r\n\r\n', expect: 'reject' },
  { name: 'invalid characters in Host (RFC 3986 reg-name; host-header injection)', bytes: 'GET /vector HTTP/1.1\r\nHost: a b@evil\r\n\r\n', expect: 'reject' },
  { name: 'overlong request line (RFC 9112 §3: 414)', bytes: `GET /${'a'.repeat(40_000)} HTTP/1.1\r\nHost: a\r\n\r\n`, expect: 'reject', status: 414 },
  { name: 'overlong header section (RFC 6585 §5: 431)', bytes: `GET /vector HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(40_000)}\r\n\r\n`, expect: 'reject', status: 431 },
  { name: 'invalid HTTP version "HTTP/1.2" (parser differential)', bytes: 'GET /vector HTTP/1.2\r\nHost: a\r\n\r\n', expect: 'reject' },
  { name: 'method with a space inside "GE T" (parser differential)', bytes: 'GE T /vector HTTP/1.1\r\nHost: a\r\n\r\n', expect: 'reject' },
  // #22: versions other than 1.0 and 1.1 in an HTTP/1 request line → 505 (or 400), never to a server nor to HTTP/2 code.
  { name: 'HTTP/2.0 in an HTTP/1 request line (#22)', bytes: 'GET /vector HTTP/2.0\r\nHost: a\r\n\r\n', expect: 'reject', status: [505, 400] },
  {
    name: 'HTTP/2.0 POST with Content-Length in an HTTP/1 request line (#22)',
    bytes: 'POST /vector HTTP/2.0\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc',
    expect: 'reject',
    status: [505, 400],
  },
  { name: 'HTTP/0.9 in a request line with headers (#22)', bytes: 'GET /vector HTTP/0.9\r\nHost: a\r\n\r\n', expect: 'reject', status: [505, 400] },
  { name: 'HTTP/3.0 in an HTTP/1 request line (#22)', bytes: 'GET /vector HTTP/3.0\r\nHost: a\r\n\r\n', expect: 'reject', status: [505, 400] },
  {
    name: 'HTTP/1.0 keep-alive request with Transfer-Encoding: chunked and no Content-Length (RFC 9112 §6.1; #22)',
    bytes: 'POST /vector HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    expect: 'reject',
    status: 400,
  },
  // #22: look-alikes of framing headers (a server folding `_`/`.` into `-` frames them as the real header): never forwarded.
  {
    name: 'underscore look-alike "Transfer_Encoding: chunked" beside Content-Length is not forwarded (#22; nginx underscores_in_headers off)',
    bytes: post('Transfer_Encoding: chunked\r\nContent-Length: 5\r\n', '0\r\n\r\n'),
    expect: 'forward',
  },
  {
    name: 'underscore look-alike "Content_Length: 5" beside "content-length: 0" is not forwarded (#22)',
    bytes: post('Content_Length: 5\r\ncontent-length: 0\r\n', ''),
    expect: 'forward',
  },
  {
    name: 'underscore look-alike "CONTENT_LENGTH" on a chunked request is not forwarded (#22)',
    bytes: post('CONTENT_LENGTH: 40\r\nTransfer-Encoding: chunked\r\n', '3\r\nabc\r\n0\r\n\r\n'),
    expect: 'forward',
  },
  { name: 'dot look-alike "Content.Length" is not forwarded (#22)', bytes: post('Content.Length: 9\r\nContent-Length: 3\r\n', 'abc'), expect: 'forward' },
  {
    name: 'a header name with an underscore ("X_Forwarded_Host", read as X-Forwarded-Host by CGI-style servers) is dropped by default (#22)',
    bytes: 'GET /vector HTTP/1.1\r\nHost: a\r\nX_Forwarded_Host: evil.example\r\n\r\n',
    expect: 'forward',
  },
  {
    name: 'underscore look-alike "Connection_" of Connection is not forwarded (#22)',
    bytes: 'GET /vector HTTP/1.1\r\nHost: a\r\nCon_nection: close\r\nConnection_: x\r\nConnection.: y\r\n\r\n',
    expect: 'forward',
  },
];

describe('request framing vectors against a strict raw backend', () => {
  let velocity: Velocity;
  let backend: RawBackend;
  let port: number;
  const ctx = suiteCleanup();
  before(async () => {
    backend = await startRawBackend(ctx);
    velocity = await startInProcess(
      ctx,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
client: { header_timeout: 5s, max_header_size: 16kb }
services:
  - name: raw
    retries: { attempts: 1 }
    servers: [${backend.url}]
`,
    );
    port = velocity.address.port;
  });

  /** A clean request on a fresh client connection: backend sees exactly it, well framed, on its pooled connection. */
  async function assertBackendClean(label: string): Promise<void> {
    const before = backend.requests.length;
    const good = await rawExchange(port, ['GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n']);
    assert.deepEqual(good.statuses, [200], `${label}: a good request after the vector is answered 200, got ${JSON.stringify(good.text.slice(0, 200))}`);
    const fresh = backend.requests.slice(before);
    assert.equal(fresh.length, 1, `${label}: the backend framed exactly one request for the good one, got ${fresh.map((r) => r.requestLine).join(' | ')}`);
    assert.equal(fresh[0]?.requestLine, 'GET /after HTTP/1.1');
    // (backend.truncated may hold a streamed body Velocity aborted mid-way: a cut-off request and a close, never a whole one.)
    assert.deepEqual(backend.garbage, [], `${label}: the backend received nothing it could not frame`);
    for (const r of backend.requests) assert.equal(r.ambiguity, undefined, `${label}: backend saw an ambiguous request ${r.requestLine}: ${r.ambiguity}`);
  }

  for (const vector of VECTORS) {
    test(vector.name, async () => {
      backend.reset();
      const seen = await rawExchange(port, [vector.bytes + SMUGGLED]);
      const paths = backend.requests.map((r) => r.requestLine);
      if (vector.expect === 'reject') {
        const first = seen.statuses[0];
        const allowed = vector.status === undefined ? undefined : [vector.status].flat();
        const expected = allowed ? allowed.join(' or ') : '4xx';
        assert.ok(
          first === undefined ? seen.closed : allowed ? allowed.includes(first) : first >= 400 && first < 500,
          `answered ${expected} or closed, got ${JSON.stringify(seen.text.slice(0, 300))}`,
        );
        if (allowed) assert.ok(first !== undefined && allowed.includes(first), `answered ${expected}, got ${JSON.stringify(seen.text.slice(0, 300))}`);
        assert.ok(seen.closed, 'the connection is closed after a refused head');
        assert.ok(!seen.statuses.slice(1).includes(200), `nothing pipelined behind the bad request is answered: ${JSON.stringify(seen.text.slice(0, 300))}`);
        assert.deepEqual(paths, [], 'the backend never saw the bad request nor what was pipelined behind it');
      } else {
        assert.deepEqual(seen.statuses, [200, 200], `the legal request and the pipelined one are both answered: ${JSON.stringify(seen.text.slice(0, 300))}`);
        assert.equal(paths.length, 2);
        const underscored = backend.requests.flatMap((r) => r.headers.map(([n]) => n)).filter((n) => n.includes('_'));
        assert.deepEqual(underscored, [], 'header names with underscores are dropped by default');
        if (vector.backendSees) {
          const first = backend.requests.find((r) => !r.requestLine.includes('smuggled'));
          assert.equal(first?.requestLine, vector.backendSees.requestLine);
          assert.deepEqual(
            first?.headers.filter(([n]) => n === 'host').map(([, v]) => v),
            [vector.backendSees.host],
          );
        }
      }
      await assertBackendClean(vector.name);
    });
  }

  test('a pipelined sequence of good requests on one client connection reaches the backend as exactly those requests', async () => {
    backend.reset();
    const seen = await rawExchange(port, [
      'GET /one HTTP/1.1\r\nHost: a\r\n\r\nPOST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcPOST /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n',
    ]);
    assert.deepEqual(seen.statuses, [200, 200, 200]);
    // Node hands pipelined requests over at once; they may reach the backend on different pooled connections in any order.
    assert.deepEqual(backend.requests.map((r) => [r.requestLine, r.body.toString(), r.ambiguity]).sort(), [
      ['GET /one HTTP/1.1', '', undefined],
      ['POST /three HTTP/1.1', 'xy', undefined],
      ['POST /two HTTP/1.1', 'abc', undefined],
    ]);
  });
});

interface ResponseVector {
  name: string;
  response: string;
}

const RESPONSE_VECTORS: ResponseVector[] = [
  {
    name: 'response with Content-Length and Transfer-Encoding (response splitting, Klein 2004; Kettle 2019)',
    response: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  },
  {
    name: 'response with two different Content-Length values (Klein 2004 "HTTP response splitting")',
    response: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 7\r\n\r\nokHTTP/',
  },
  {
    name: 'response with a bad chunk size (desync of the backend connection, Kettle 2019)',
    response: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n',
  },
  { name: 'response with an obs-fold header line (RFC 9112 §5.2)', response: 'HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok' },
  { name: 'response with a NUL byte in a header value (RFC 9110 §5.5)', response: 'HTTP/1.1 200 OK\r\nX-Nul: a\x00b\r\nContent-Length: 2\r\n\r\nok' },
  { name: 'response with bare LF line endings (RFC 9112 §2.2)', response: 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok' },
  {
    name: 'response with a tab after chunked "Transfer-Encoding: chunked\\t" (llhttp reads it as not chunked, to the close)',
    response: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n2\r\nok\r\n0\r\n\r\n',
  },
  { name: 'response with a space before the colon "Content-Length : 2" (RFC 9112 §5.1)', response: 'HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok' },
];

describe('malformed responses from a backend are not passed to clients', () => {
  let backend: RawBackend;
  let port: number;
  const ctx = suiteCleanup();
  before(async () => {
    backend = await startRawBackend(ctx);
    const velocity = await startInProcess(
      ctx,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: raw
    retries: { attempts: 1 }
    passive_health: { enabled: false }
    circuit_breaker: { enabled: false }
    servers: [${backend.url}]
`,
    );
    port = velocity.address.port;
  });

  for (const vector of RESPONSE_VECTORS) {
    test(`${vector.name} → 502 or a cut connection`, async () => {
      backend.reset();
      backend.respondWith(vector.response);
      const seen = await rawExchange(port, ['GET /r HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n']);
      // A defect found before the head is passed on → 502; one found in the body after the head was accepted → the client connection is cut.
      if (seen.statuses.length === 0) assert.ok(seen.closed && seen.text === '', `closed without a response, got ${JSON.stringify(seen.text)}`);
      else {
        assert.equal(seen.statuses[0], 502, `got ${JSON.stringify(seen.text.slice(0, 300))}`);
        assert.match(seen.text, /x-velocity-error: UPSTREAM_BAD_RESPONSE/i);
      }
      assert.doesNotMatch(seen.text, /x-folded|x-nul|\bok$/i, 'nothing of the bad response reaches the client');
      // The poisoned backend connection is not reused: a good answer afterwards arrives intact.
      backend.respondWith(OK_RESPONSE);
      const good = await rawExchange(port, ['GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n']);
      assert.deepEqual(good.statuses, [200], `got ${JSON.stringify(good.text.slice(0, 300))}`);
      assert.match(good.text, /\r\n\r\nok$/);
    });
  }
});

test('a response whose Transfer-Encoding does not end in chunked is read until close and re-framed for the client (RFC 9112 §6.3 rule 4)', async (t) => {
  const backend = await startRawBackend(t);
  backend.respondWith('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\nConnection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n');
  const velocity = await startInProcess(t, `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: raw\n    servers: [${backend.url}]\n`);
  const seen = await rawExchange(velocity.address.port, ['GET /r HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n']);
  assert.deepEqual(seen.statuses, [200]);
  const head = seen.text.slice(0, seen.text.indexOf('\r\n\r\n')).toLowerCase();
  // One framing toward the client, never the backend's ambiguous header.
  assert.equal((head.match(/transfer-encoding|content-length/g) ?? []).length, 1, head);
  assert.doesNotMatch(head, /identity/);
});
