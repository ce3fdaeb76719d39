/** Header rules, security headers, path rules, redirects, body and in-flight limits and error pages, through the binary. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { startEcho } from '../middleware/echo.ts';
import { get, startVelocityProcess, testAgent } from '../support/velocity.ts';

type Seen = { method: string; url: string; headers: Record<string, string> };

describe('request and response rules', () => {
  test('header rules set, add and remove with client IP, request id and host placeholders; security headers keep a server CSP', async (t) => {
    const echo = await startEcho(t, (req, res) => {
      if (req.url !== '/csp') return false;
      res.writeHead(200, { 'content-security-policy': "default-src 'self'", 'x-powered-by': 'php' });
      res.end('ok');
      return true;
    });
    const v = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [${echo.url}]
    middleware:
      - headers:
          request:
            set: { x-real-ip: "\${client_ip}", x-trace: "req-\${request_id}", x-origin-host: "\${host}" }
            add: { x-tags: b }
            remove: [x-secret]
          response:
            set: { x-served-by: velocity }
            remove: [x-powered-by]
      - security_headers: { hsts: 1h, content_security_policy: "default-src 'none'" }
`,
    );
    const agent = testAgent(t);
    const res = await get(agent, `${v.url}/h`, { headers: { 'x-secret': 's', 'x-tags': 'a', 'x-request-id': 'rid-1', host: 'shop.test:8080' } });
    const seen = JSON.parse(res.body) as Seen;
    assert.equal(seen.headers['x-real-ip'], '127.0.0.1');
    assert.equal(seen.headers['x-trace'], 'req-rid-1');
    assert.equal(seen.headers['x-origin-host'], 'shop.test:8080');
    assert.equal(seen.headers['x-tags'], 'a, b');
    assert.equal(seen.headers['x-secret'], undefined);
    assert.equal(res.headers['x-served-by'], 'velocity');
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['x-frame-options'], 'SAMEORIGIN');
    assert.equal(res.headers['referrer-policy'], 'strict-origin-when-cross-origin');
    assert.equal(res.headers['content-security-policy'], "default-src 'none'");
    assert.equal(res.headers['strict-transport-security'], undefined, 'HSTS only over HTTPS');
    const csp = await get(agent, `${v.url}/csp`);
    assert.equal(csp.headers['content-security-policy'], "default-src 'self'", "the server's own CSP passes through");
    assert.equal(csp.headers['x-powered-by'], undefined);
  });

  test('strip prefix with X-Forwarded-Prefix, add prefix, and a regex rewrite with captures keep the query', async (t) => {
    const echo = await startEcho(t);
    const v = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [${echo.url}]
    routes:
      - { paths: [/api], middleware: [{ strip_prefix: { prefixes: [/api] } }] }
      - { paths: [/v], middleware: [{ strip_prefix: { prefixes: [/v] } }, { add_prefix: { prefix: /internal/v2 } }] }
      - paths: [/users]
        middleware:
          - replace_path: { regex: "^/users/(?<id>[0-9]+)/posts/([0-9]+)$", replacement: "/api/posts/$2?user=$<id>" }
      - paths: [/blog]
        middleware:
          - replace_path: { regex: "^/blog/([a-z-]+)$", replacement: "/articles/$1.html" }
`,
    );
    const agent = testAgent(t);
    const seen = async (path: string) => JSON.parse((await get(agent, `${v.url}${path}`)).body) as Seen;
    const stripped = await seen('/api/orders/7?x=1');
    assert.equal(stripped.url, '/orders/7?x=1');
    assert.equal(stripped.headers['x-forwarded-prefix'], '/api');
    assert.equal((await seen('/api')).url, '/');
    assert.equal((await seen('/apix')).url, '/apix', 'no route: the prefix matches on segment boundaries');
    assert.equal((await seen('/v/items?q=a')).url, '/internal/v2/items?q=a');
    assert.equal((await seen('/users/42/posts/7')).url, '/api/posts/7?user=42');
    assert.equal((await seen('/blog/hello-world?ref=x')).url, '/articles/hello-world.html?ref=x');
    assert.equal((await seen('/blog/Not_Matching')).url, '/blog/Not_Matching');
  });

  test('redirects: regex with captures at each status, scheme and host redirects, and no loop on the target', async (t) => {
    const echo = await startEcho(t);
    const routes = [301, 302, 307, 308]
      .map((s) => `      - { paths: [/r${s}], middleware: [{ redirect: { regex: "^http://([^/]+)/r${s}/(.*)$", to: "https://new.example.com/$1/$2", status: ${s} } }] }`)
      .join('\n');
    const v = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [${echo.url}]
    routes:
${routes}
      - { paths: [/secure], middleware: [{ redirect: { scheme: https, status: 308 } }] }
      - { paths: [/moved], middleware: [{ redirect: { host: www.example.com, status: 301 } }] }
`,
    );
    for (const status of [301, 302, 307, 308]) {
      const res = await request(`${v.url}/r${status}/a/b?c=d`, { headers: { host: 'old.test' } });
      await res.body.dump();
      assert.equal(res.statusCode, status);
      assert.equal(res.headers.location, 'https://new.example.com/old.test/a/b?c=d');
    }
    const secure = await request(`${v.url}/secure/x?y=1`, { headers: { host: 'shop.test:8000' } });
    await secure.body.dump();
    assert.equal(secure.statusCode, 308);
    assert.equal(secure.headers.location, 'https://shop.test/secure/x?y=1');
    const moved = await request(`${v.url}/moved/p`, { headers: { host: 'example.com' } });
    await moved.body.dump();
    assert.equal(moved.statusCode, 301);
    assert.equal(moved.headers.location, 'http://www.example.com/moved/p');
    const there = await request(`${v.url}/moved/p`, { headers: { host: 'www.example.com' } });
    assert.equal(there.statusCode, 200, 'already on the target host: no redirect loop');
    await there.body.dump();
  });

  test('body limit: a declared length over it and a chunked body over it get 413 and never reach the server; smaller bodies pass', async (t) => {
    const echo = await startEcho(t);
    const v = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [${echo.url}]
    middleware: [{ body_limit: { max: 1kb } }]
`,
    );
    const post = async (body: Buffer, chunked: boolean) => {
      const res = await request(`${v.url}/upload`, {
        method: 'POST',
        body: chunked ? Readable.from([body.subarray(0, 10), body.subarray(10)]) : body,
      });
      const text = await res.body.text();
      return { status: res.statusCode, code: res.headers['x-velocity-error'], text };
    };
    const before = echo.seen.length;
    assert.deepEqual(await post(Buffer.alloc(2048, 1), false).then((r) => [r.status, r.code]), [413, 'PAYLOAD_TOO_LARGE']);
    assert.deepEqual(await post(Buffer.alloc(2048, 1), true).then((r) => [r.status, r.code]), [413, 'PAYLOAD_TOO_LARGE']);
    assert.equal(echo.seen.length, before, 'nothing reached the server');
    const small = await post(Buffer.alloc(1000, 1), true);
    assert.equal(small.status, 200);
    assert.equal((JSON.parse(small.text) as { bodyLength: number }).bodyLength, 1000);
  });

  test('in-flight limit: past max requests in progress the route answers 429, and the count is given back', async (t) => {
    const echo = await startEcho(t);
    const v = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [${echo.url}]
    routes:
      - { paths: [/slow], middleware: [{ in_flight: { max: 2 } }] }
`,
    );
    const agent = testAgent(t);
    const slow = [get(agent, `${v.url}/slow?delay=1500`), get(agent, `${v.url}/slow?delay=1500`)];
    // Once both are in progress a third is refused at once (until then it may pass).
    const deadline = Date.now() + 20_000;
    let third = await get(agent, `${v.url}/slow`);
    while (third.status === 200 && Date.now() < deadline) third = await get(agent, `${v.url}/slow`);
    assert.equal(third.status, 429);
    assert.equal(third.headers['x-velocity-error'], 'IN_FLIGHT_LIMIT');
    assert.deepEqual(
      (await Promise.all(slow)).map((r) => r.status),
      [200, 200],
    );
    assert.equal((await get(agent, `${v.url}/slow`)).status, 200, 'freed after they finished');
    assert.equal((await get(agent, `${v.url}/other`)).status, 200);
  });

  test("error pages: Velocity's 502 gets the file, keeping its status and x-velocity-error; a server's 500 gets a service's page with upstream: true", async (t) => {
    const echo = await startEcho(t);
    const pages = await startEcho(t, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<h1>page for ${req.url}</h1>`);
      return true;
    });
    const dir = mkdtempSync(join(tmpdir(), 'velocity-pages-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, '50x.html'), '<h1>We are fixing it</h1>\n');
    // The page fetch's timeout is generous: at load ~15 the 2 s default was missed once (an empty 500 came back).
    const v = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: dead
    paths: [/dead]
    servers: ["http://127.0.0.1:9"]
    health: { type: none }
    retries: { attempts: 1 }
    middleware: [{ error_pages: { status: 500-599, file: ${join(dir, '50x.html')} } }]
  - name: app
    servers: [${echo.url}]
    middleware: [{ error_pages: { status: 5xx, service: pages, path: "/errors/{status}.html", upstream: true, timeout: 30s } }]
  - name: pages
    hosts: []
    servers: [${pages.url}]
`,
    );
    const agent = testAgent(t);
    const dead = await get(agent, `${v.url}/dead`);
    assert.equal(dead.status, 502);
    assert.equal(dead.headers['x-velocity-error'], 'UPSTREAM_CONNECT_FAILED');
    assert.equal(dead.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(dead.body, '<h1>We are fixing it</h1>\n');
    const failing = await get(agent, `${v.url}/status/500`);
    assert.equal(failing.status, 500);
    assert.equal(failing.body, '<h1>page for /errors/500.html</h1>');
    const fine = await get(agent, `${v.url}/status/404`);
    assert.equal(fine.status, 404);
    assert.equal(fine.body, 'server said 404\n', 'outside the range the server answer passes');
  });
});
