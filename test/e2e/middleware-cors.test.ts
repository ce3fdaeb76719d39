/** CORS preflight answered from config, seen by headless Chromium's fetch from an allowed and a refused origin, through the binary. */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { request } from 'undici';
import { startEcho } from '../middleware/echo.ts';
import { launchChromium } from '../support/chromium.ts';
import { startVelocityProcess } from '../support/velocity.ts';

/** A page server: each port is its own origin for the browser. */
async function pageOrigin(t: { after(fn: () => unknown): void }): Promise<string> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>page</title>');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => server.close(r)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('CORS: Chromium fetch with a preflight succeeds from an allowed origin and is blocked from another; the server never sees a preflight', async (t) => {
  const browser = await launchChromium(t);
  if (!browser) return;
  const echo = await startEcho(t);
  const allowed = await pageOrigin(t);
  const other = await pageOrigin(t);
  const v = await startVelocityProcess(
    t,
    `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: api
    servers: [${echo.url}]
    middleware:
      - cors: { origins: ["${allowed}"], methods: [GET, PUT], headers: [x-token, content-type], expose_headers: [x-trace], credentials: true, max_age: 10m }
      - headers: { response: { set: { x-trace: "t-\${request_id}" } } }
`,
  );
  const page = await browser.newPage();
  const attempt = (origin: string) =>
    page.goto(`${origin}/`).then(() =>
      page.evaluate(async (url) => {
        try {
          const res = await fetch(url, { method: 'PUT', headers: { 'x-token': 't1', 'content-type': 'application/json' }, body: '{"a":1}', credentials: 'include' });
          return { ok: true, status: res.status, body: await res.text(), trace: res.headers.get('x-trace') };
        } catch (err) {
          return { ok: false, error: String(err) };
        }
      }, `${v.url}/items/1`),
    );
  const good = await attempt(allowed);
  assert.equal(good.ok, true, JSON.stringify(good));
  assert.equal(good.status, 200);
  assert.equal((JSON.parse(good.body as string) as { method: string }).method, 'PUT');
  assert.match(String(good.trace), /^t-[0-9a-f-]{36}$/, 'an exposed header is readable');
  const bad = await attempt(other);
  assert.equal(bad.ok, false);
  assert.match(String(bad.error), /TypeError/);
  assert.ok(
    echo.seen.every((s) => s.method !== 'OPTIONS'),
    'preflights were answered by Velocity',
  );
  assert.equal(echo.seen.filter((s) => s.method === 'PUT').length, 1, 'the refused origin never got past the preflight');
  // The preflight as the config answers it.
  const pre = await request(`${v.url}/items/1`, {
    method: 'OPTIONS',
    headers: { origin: allowed, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'X-Token, x-other' },
  });
  await pre.body.dump();
  assert.equal(pre.statusCode, 204);
  assert.equal(pre.headers['access-control-allow-origin'], allowed);
  assert.equal(pre.headers['access-control-allow-credentials'], 'true');
  assert.equal(pre.headers['access-control-allow-methods'], 'GET, PUT');
  assert.equal(pre.headers['access-control-allow-headers'], 'x-token');
  assert.equal(pre.headers['access-control-max-age'], '600');
});
