/**
 * #22: look-alikes of framing headers and header names with underscores. A
 * server that folds `_` (or `.`) into `-` frames `Transfer_Encoding` as the real
 * header; Velocity never forwards such a look-alike, drops underscore names by
 * default (nginx `underscores_in_headers off`), and can reject or allow them.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:http2';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { startInProcess } from '../support/velocity.ts';
import { type RawBackend, rawExchange, startRawBackend } from './raw-http.ts';

const yaml = (backend: RawBackend, client = '', listeners = '') =>
  `admin: { enabled: false }\n${listeners || 'listen: "127.0.0.1:0"'}\n${client}\nservices:\n  - name: raw\n    retries: { attempts: 1 }\n    servers: [${backend.url}]\n`;

const headerNames = (backend: RawBackend) => backend.requests.flatMap((r) => r.headers.map(([n]) => n));

test('underscore_headers: reject answers 400 to any underscore name or framing look-alike, and forwards nothing', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, yaml(backend, 'client: { underscore_headers: reject }'));
  for (const head of ['X_Custom: 1\r\n', 'Transfer_Encoding: chunked\r\nContent-Length: 5\r\n', 'Content.Length: 3\r\n']) {
    backend.reset();
    const seen = await rawExchange(velocity.address.port, [`POST /r HTTP/1.1\r\nHost: a\r\n${head}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n`]);
    assert.equal(seen.statuses[0], 400, `${head}: got ${JSON.stringify(seen.text.slice(0, 200))}`);
    assert.match(seen.text, /x-velocity-error: BAD_REQUEST/i);
    assert.ok(!seen.statuses.includes(200), 'nothing pipelined behind is answered');
    assert.deepEqual(backend.requests, [], `${head}: nothing reached the server`);
  }
});

test('underscore_headers: allow forwards underscore names but never a look-alike of Content-Length, Transfer-Encoding, Host or Connection', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, yaml(backend, 'client: { underscore_headers: allow }'));
  const seen = await rawExchange(velocity.address.port, [
    'POST /r HTTP/1.1\r\nHost: a\r\nX_Custom: 1\r\nTransfer_Encoding: chunked\r\nHOST_: evil\r\nConnection.: close\r\nContent-Length: 5\r\n\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n',
  ]);
  assert.deepEqual(seen.statuses, [200, 200], seen.text.slice(0, 300));
  const names = headerNames(backend);
  assert.ok(names.includes('x_custom'), `an ordinary underscore name is forwarded: ${names}`);
  for (const r of backend.requests) assert.equal(r.ambiguity, undefined, `${r.requestLine}: ${r.ambiguity}`);
  // Pipelined requests may reach the server on different pooled connections, in any order.
  assert.deepEqual(backend.requests.map((r) => r.requestLine).sort(), ['GET /next HTTP/1.1', 'POST /r HTTP/1.1']);
});

test('by default underscore names and look-alikes are dropped from HTTP/2 requests too (the server is spoken to in HTTP/1.1)', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, yaml(backend, '', 'listen: []\nlisteners:\n  - { type: http, listen: "127.0.0.1:0", http2: true }'));
  const session = connect(`http://127.0.0.1:${velocity.address.port}`);
  t.after(() => session.close());
  const status = await new Promise<number>((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': '/h2', 'content-length': '3', transfer_encoding: 'chunked', x_custom: '1', 'x-kept': 'yes' });
    stream.on('response', (h) => resolve(Number(h[':status'])));
    stream.on('error', reject);
    stream.resume();
    stream.end('abc');
  });
  assert.equal(status, 200);
  const names = headerNames(backend);
  assert.ok(names.includes('x-kept'), `ordinary headers pass: ${names}`);
  assert.deepEqual(
    names.filter((n) => n.includes('_')),
    [],
  );
  assert.equal(backend.requests[0]?.body.toString(), 'abc');
});

test('underscore_headers takes drop, reject or allow; anything else is a positioned config error', () => {
  assert.equal(parseConfig('services: [{ name: a, servers: ["http://127.0.0.1:1"] }]\n', 'v.yaml').config.client.underscore_headers, 'drop');
  assert.throws(
    () => parseConfig('client:\n  underscore_headers: keep\nservices: [{ name: a, servers: ["http://127.0.0.1:1"] }]\n', 'v.yaml'),
    (err: unknown) => err instanceof ConfigError && /v\.yaml:2:\d+: client\.underscore_headers/.test(err.message),
  );
});
