/** Basic auth against bcrypt and argon2 hashes, and forward auth allowing, denying, timing out and dead, through the binary. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { describe, test } from 'node:test';
import { argon2id, bcrypt } from 'hash-wasm';
import { startEcho } from '../middleware/echo.ts';
import { get, startVelocityProcess, testAgent } from '../support/velocity.ts';

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('authentication', () => {
  test('basic auth: right credentials pass (bcrypt and argon2), wrong and missing ones get 401 with a challenge; the header is not forwarded', async (t) => {
    const echo = await startEcho(t);
    const bcryptHash = await bcrypt({ password: 'correct horse', salt: randomBytes(16), costFactor: 8, outputType: 'encoded' });
    const argonHash = await argon2id({ password: 'battery staple', salt: randomBytes(16), parallelism: 1, iterations: 2, memorySize: 1024, hashLength: 32, outputType: 'encoded' });
    const v = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [${echo.url}]
    middleware:
      - basic_auth:
          realm: Staff
          users: { alice: "${bcryptHash}", bob: "${argonHash}" }
`,
    );
    const agent = testAgent(t);
    const as = (authorization?: string) => get(agent, `${v.url}/private`, { headers: authorization ? { authorization } : {} });
    const alice = await as(basic('alice', 'correct horse'));
    assert.equal(alice.status, 200);
    assert.equal((JSON.parse(alice.body) as { headers: Record<string, string> }).headers.authorization, undefined);
    assert.equal((await as(basic('alice', 'correct horse'))).status, 200, 'again, from the verified cache');
    assert.equal((await as(basic('bob', 'battery staple'))).status, 200);
    for (const wrong of [basic('alice', 'wrong'), basic('bob', 'correct horse'), basic('mallory', 'correct horse'), 'Bearer x', 'Basic !!!']) {
      const res = await as(wrong);
      assert.equal(res.status, 401, wrong);
      assert.equal(res.headers['www-authenticate'], 'Basic realm="Staff", charset="UTF-8"');
      assert.equal(res.headers['x-velocity-error'], 'AUTH_REQUIRED');
    }
    const missing = await as();
    assert.equal(missing.status, 401);
    // A WebSocket upgrade goes through the same middleware before any tunnel is opened.
    const upgrade = await new Promise<number | undefined>((resolve, reject) => {
      const r = httpRequest(`${v.url}/ws`, {
        headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' },
      });
      r.on('response', (m) => {
        m.resume();
        resolve(m.statusCode);
      });
      r.on('upgrade', (_m, socket) => {
        socket.destroy();
        resolve(101);
      });
      r.on('error', reject);
      r.end();
    });
    assert.equal(upgrade, 401);
    assert.equal(echo.seen.length, 3, 'only the authenticated requests reached the server');
  });

  test('forward auth: allowed with headers copied, denied with the auth answer, and a slow or dead auth service fails closed with 503', async (t) => {
    const echo = await startEcho(t);
    const auth = await startEcho(t, (req, res) => {
      const token = req.headers.authorization;
      if (token === 'Bearer good') {
        res.writeHead(200, { 'x-user': 'alice', 'x-roles': 'admin', 'x-internal': 'no' });
        res.end();
      } else if (token === 'Bearer slow') {
        setTimeout(() => res.end(), 60_000).unref();
      } else {
        res.writeHead(401, { 'www-authenticate': 'Bearer realm="api"', 'content-type': 'application/json', 'x-internal': 'no' });
        res.end(JSON.stringify({ error: 'invalid token', uri: req.headers['x-forwarded-uri'] }));
      }
      return true;
    });
    const v = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [${echo.url}]
    routes:
      - paths: [/dead]
        middleware: [{ forward_auth: { url: "http://127.0.0.1:9/verify", timeout: 2s } }]
    middleware:
      - forward_auth: { url: "${auth.url}/verify", timeout: 500ms, copy_headers: [x-user, x-roles] }
`,
    );
    const agent = testAgent(t);
    const allowed = await get(agent, `${v.url}/orders?id=1`, { headers: { authorization: 'Bearer good', 'x-user': 'spoofed' } });
    assert.equal(allowed.status, 200);
    const seen = JSON.parse(allowed.body) as { headers: Record<string, string> };
    assert.equal(seen.headers['x-user'], 'alice', 'the auth answer replaces a client-sent value');
    assert.equal(seen.headers['x-roles'], 'admin');
    assert.equal(seen.headers['x-internal'], undefined, 'only the chosen headers are copied');
    const asked = auth.seen.at(-1);
    assert.equal(asked?.headers['x-forwarded-uri'], '/orders?id=1');
    assert.equal(asked?.headers['x-forwarded-method'], 'GET');
    const before = echo.seen.length;
    const denied = await get(agent, `${v.url}/orders`, { headers: { authorization: 'Bearer bad' } });
    assert.equal(denied.status, 401);
    assert.equal(denied.headers['www-authenticate'], 'Bearer realm="api"');
    assert.equal(denied.headers['x-internal'], undefined);
    assert.deepEqual(JSON.parse(denied.body), { error: 'invalid token', uri: '/orders' });
    const slow = await get(agent, `${v.url}/orders`, { headers: { authorization: 'Bearer slow' } });
    assert.equal(slow.status, 503, 'no answer within the timeout: closed');
    assert.equal(slow.headers['x-velocity-error'], 'AUTH_UNAVAILABLE');
    const dead = await get(agent, `${v.url}/dead`, { headers: { authorization: 'Bearer good' } });
    assert.equal(dead.status, 503);
    assert.equal(dead.headers['x-velocity-error'], 'AUTH_UNAVAILABLE');
    assert.equal(echo.seen.length, before, 'no refused request reached the server');
    await v.logs.waitFor(/forward auth http:\/\/127\.0\.0\.1:\d+\/verify: no answer within 500 ms; refused with 503/);
  });
});
