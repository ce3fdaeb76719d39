/**
 * Header rules at the edge: hop-by-hop and Connection-listed headers never cross
 * Velocity in either direction, forwarding headers from untrusted clients are
 * replaced, Host is validated, and no config value can inject a header.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { startInProcess } from '../support/velocity.ts';
import { rawExchange, type SeenRequest, startRawBackend } from './raw-http.ts';

const yaml = (backendUrl: string, extra = '') => `listen: "127.0.0.1:0"
admin: { enabled: false }
${extra}services:
  - name: raw
    servers: [${backendUrl}]
`;

const names = (r: SeenRequest | undefined) => (r?.headers ?? []).map(([n]) => n);
const values = (r: SeenRequest | undefined, name: string) => (r?.headers ?? []).filter(([n]) => n === name).map(([, v]) => v);

test('hop-by-hop and Connection-listed request headers are never forwarded (RFC 9110 §7.6.1)', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, yaml(backend.url));
  const seen = await rawExchange(velocity.address.port, [
    'GET /h HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret, x-other\r\nX-Secret: 1\r\nX-Other: 2\r\nKeep-Alive: timeout=99\r\nTE: trailers\r\nTrailer: x-t\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nX-Kept: yes\r\n\r\n',
  ]);
  assert.equal(seen.statuses[0], 200);
  const got = names(backend.requests[0]);
  for (const h of ['x-secret', 'x-other', 'keep-alive', 'te', 'trailer', 'proxy-authorization', 'proxy-connection', 'upgrade', 'http2-settings']) {
    assert.ok(!got.includes(h), `${h} reached the backend: ${got.join(', ')}`);
  }
  assert.deepEqual(values(backend.requests[0], 'x-kept'), ['yes']);
  // Velocity's own Connection header toward the server is its pool's business, never the client's list.
  for (const v of values(backend.requests[0], 'connection')) assert.doesNotMatch(v, /secret|other/i);
});

test('hop-by-hop and Connection-listed response headers are never passed to the client', async (t) => {
  const backend = await startRawBackend(t);
  backend.respondWith(
    'HTTP/1.1 200 OK\r\nConnection: X-Backend-Secret\r\nX-Backend-Secret: s3cret\r\nKeep-Alive: timeout=1\r\nProxy-Authenticate: Basic\r\nTrailer: x-t\r\nUpgrade: h2c\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok',
  );
  const velocity = await startInProcess(t, yaml(backend.url));
  const seen = await rawExchange(velocity.address.port, ['GET /h HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n']);
  assert.equal(seen.statuses[0], 200);
  const head = seen.text.slice(0, seen.text.indexOf('\r\n\r\n')).toLowerCase();
  for (const h of ['x-backend-secret', 'keep-alive:', 'proxy-authenticate', 'trailer:', 'upgrade:']) assert.ok(!head.includes(h), `${h} reached the client:\n${head}`);
  assert.match(head, /x-kept: yes/);
});

test('X-Forwarded-*, Forwarded and X-Real-IP from an untrusted client are replaced, not appended', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, yaml(backend.url));
  await rawExchange(velocity.address.port, [
    'GET /h HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nForwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\nConnection: close\r\n\r\n',
  ]);
  const r = backend.requests[0];
  assert.deepEqual(values(r, 'x-forwarded-for'), ['127.0.0.1']);
  assert.deepEqual(values(r, 'x-forwarded-proto'), ['http']);
  assert.deepEqual(values(r, 'x-forwarded-host'), ['app.example']);
  assert.deepEqual(values(r, 'forwarded'), []);
  assert.deepEqual(values(r, 'x-real-ip'), []);
});

test('X-Forwarded-For from a trusted proxy is kept and the peer appended once', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, yaml(backend.url, 'trusted_proxies: [127.0.0.1/32]\n'));
  await rawExchange(velocity.address.port, ['GET /h HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n']);
  assert.deepEqual(values(backend.requests[0], 'x-forwarded-for'), ['203.0.113.9, 127.0.0.1']);
});

test('Host is validated: missing on HTTP/1.1, duplicated, or with illegal characters → 400 and nothing forwarded; HTTP/1.0 without Host is served', async (t) => {
  const backend = await startRawBackend(t);
  const velocity = await startInProcess(t, yaml(backend.url));
  const port = velocity.address.port;
  for (const head of [
    'GET / HTTP/1.1\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n',
    'GET / HTTP/1.1\r\nHost: a/b\r\n',
    'GET / HTTP/1.1\r\nHost: a"<script>\r\n',
    'GET / HTTP/1.1\r\nHost: a:80:80 x\r\n',
  ]) {
    const seen = await rawExchange(port, [`${head}\r\n`]);
    assert.equal(seen.statuses[0], 400, `${JSON.stringify(head)} → ${JSON.stringify(seen.text.slice(0, 200))}`);
    assert.match(seen.text, /x-velocity-error: BAD_REQUEST/i);
  }
  assert.equal(backend.requests.length, 0);
  const old = await rawExchange(port, ['GET /old HTTP/1.0\r\n\r\n']);
  assert.equal(old.statuses[0], 200);
  assert.equal(backend.requests.length, 1);
});

test('config values that end up in a request line, a Host header or a cookie cannot carry CR/LF (header injection) → ConfigError with a position', () => {
  const base = (service: string) => `services:\n  - name: a\n${service}    servers: [http://127.0.0.1:1]\n`;
  const cases: [string, string][] = [
    ['health.host', base('    health: { type: http, host: "a\\r\\nX-Injected: 1" }\n')],
    ['health.path', base('    health: { type: http, path: "/h HTTP/1.1\\r\\nX-Injected: 1" }\n')],
    ['sticky.cookie', base('    sticky: { cookie: "v\\r\\nSet-Cookie: admin=1" }\n')],
    ['sticky.path', base('    sticky: { path: "/; Domain=evil.example" }\n')],
    ['hosts', 'services:\n  - name: a\n    hosts: ["a\\r\\nX-Injected: 1"]\n    servers: [http://127.0.0.1:1]\n'],
    ['servers[0].health_path', 'services:\n  - name: a\n    servers: [{ url: "http://127.0.0.1:1", health_path: "/h\\nX-Injected: 1" }]\n'],
    ['policy.header', base('    policy: { name: header-hash, header: "x-user\\r\\nX-Injected" }\n')],
  ];
  for (const [field, text] of cases) {
    assert.throws(
      () => parseConfig(text, 'inject.yaml'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, `${field}: ${String(err)}`);
        const problem = err.problems[0];
        assert.ok(problem && problem.line >= 1 && problem.column >= 1, `${field}: a position`);
        return true;
      },
      `${field} accepted a CR/LF value`,
    );
  }
});
