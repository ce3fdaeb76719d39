/**
 * The admin listener as an attack surface: every mutating route (taken from the
 * OpenAPI document, so a new one is covered without editing this file) refuses a
 * missing or wrong token with 401 and changes nothing; oversized JSON gets 413,
 * malformed JSON 400; and the secrets in the config (admin.token, a Redis URL
 * password, a PostgreSQL password) never appear in API output, /metrics or the
 * process log.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { request } from 'undici';
import { freePort } from '../support/spawn.ts';
import { startBackends, startInProcess } from '../support/velocity.ts';

const TOKEN = 'admin-surface-token-S3CRET-0123456789';
const REDIS_PASSWORD = 'redis-pass-S3CRET-4711';
const PG_PASSWORD = 'pg-pass-S3CRET-0815';
const SECRETS = [TOKEN, REDIS_PASSWORD, PG_PASSWORD];

/** POST routes that read and answer but change nothing (no token needed on loopback). */
const READ_ONLY_POSTS = new Set(['POST /api/v1/config/validate']);

interface Call {
  status: number;
  text: string;
}

async function call(base: string, method: string, path: string, options: { token?: string; authorization?: string; body?: string | Buffer; type?: string } = {}): Promise<Call> {
  const headers: Record<string, string> = {};
  if (options.authorization !== undefined) headers.authorization = options.authorization;
  else if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = options.type ?? 'application/json';
  const res = await request(`${base}${path}`, { method: method as 'GET', headers, body: options.body });
  return { status: res.statusCode, text: await res.body.text() };
}

async function startSurface(t: Parameters<typeof startBackends>[0]) {
  const [b1, b2] = await startBackends(t, 2);
  // Nothing listens on these ports: Velocity logs that Redis and the log store are unreachable,
  // which is where a URL with its password would most likely end up in a log line.
  const redisUrl = `redis://:${REDIS_PASSWORD}@127.0.0.1:${await freePort()}`;
  const pgUrl = `postgres://velocity:${PG_PASSWORD}@127.0.0.1:${await freePort()}/postgres`;
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  const yaml = `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: ${TOKEN} }
state: { store: redis, url: "${redisUrl}", on_failure: open, timeout: 200ms }
rate_limits:
  - { name: generous, rate: 100000/s }
logs: { store: postgres, url: "${pgUrl}", flush_interval: 100ms }
services:
  - name: app
    servers: [${b1?.url}, ${b2?.url}]
`;
  const velocity = await startInProcess(t, yaml, { logger });
  const base = `http://127.0.0.1:${velocity.adminAddress?.port}`;
  return { velocity, base, lines, yaml, b1: b1 as NonNullable<typeof b1>, b2: b2 as NonNullable<typeof b2> };
}

/** Everything an operator can observe of the state the mutating routes change. */
async function snapshot(base: string): Promise<string> {
  const services = JSON.parse((await call(base, 'GET', '/api/v1/services')).text) as {
    services: { name: string; servers: { id: string; url: string; state: string; weight: number }[] }[];
  };
  const shape = services.services.map((s) => ({ name: s.name, servers: s.servers.map(({ id, url, state, weight }) => ({ id, url, state, weight })) }));
  const blocklist = JSON.parse((await call(base, 'GET', '/api/v1/blocklist')).text) as { entries: { cidr: string }[] };
  const config = (await call(base, 'GET', '/api/v1/config')).text;
  const reload = (await call(base, 'GET', '/api/v1/config/reload')).text;
  return JSON.stringify({ shape, blocked: blocklist.entries.map((e) => e.cidr), config, reload });
}

test('every mutating admin route refuses a missing or wrong token with 401 and changes nothing; with the token the same call works', async (t) => {
  const { base, yaml, b1, velocity } = await startSurface(t);
  const openapi = JSON.parse((await call(base, 'GET', '/api/v1/openapi.json')).text) as { paths: Record<string, Record<string, { security?: unknown[] }>> };
  const mutating: string[] = [];
  for (const [path, ops] of Object.entries(openapi.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const key = `${method.toUpperCase()} ${path}`;
      if (op.security) mutating.push(key);
      // A route that changes state but is not marked as needing the token would be an open door.
      else assert.ok(method === 'get' || READ_ONLY_POSTS.has(key), `${key} is not GET and does not require the token`);
    }
  }
  t.diagnostic(`mutating routes: ${mutating.join(', ')}`);
  assert.ok(mutating.length >= 6, `found the mutating routes (${mutating.length})`);

  await call(base, 'POST', '/api/v1/blocklist', { token: TOKEN, body: JSON.stringify({ cidr: '10.66.0.0/16' }) });
  const server = `127.0.0.1:${b1.port}`;
  // A valid request per route: the 401 is about the token, nothing else.
  // `accepted`: the answer that shows the token was taken (renewing a name no ACME block manages is a 404).
  const valid: Record<string, { path: string; body?: string; type?: string; accepted?: number }> = {
    'POST /api/v1/services/{service}/servers': { path: '/api/v1/services/app/servers', body: JSON.stringify({ url: 'http://127.0.0.1:9' }) },
    'PATCH /api/v1/services/{service}/servers/{server}': { path: `/api/v1/services/app/servers/${server}`, body: JSON.stringify({ weight: 7 }) },
    'DELETE /api/v1/services/{service}/servers/{server}': { path: `/api/v1/services/app/servers/${server}` },
    'POST /api/v1/config/reload': { path: '/api/v1/config/reload', body: yaml.replace('rate: 100000/s', 'rate: 99999/s'), type: 'text/yaml' },
    'POST /api/v1/blocklist': { path: '/api/v1/blocklist', body: JSON.stringify({ cidr: '192.0.2.0/24' }) },
    'DELETE /api/v1/blocklist/{cidr}': { path: `/api/v1/blocklist/${encodeURIComponent('10.66.0.0/16')}` },
    'POST /api/v1/certificates/{name}/renew': { path: '/api/v1/certificates/shop.example/renew', accepted: 404 },
  };
  const unknown = mutating.filter((m) => !valid[m]);
  assert.deepEqual(unknown, [], 'every mutating route has a valid request in this test');

  const before = await snapshot(base);
  const wrong = [
    { name: 'no token' },
    { name: 'wrong token', token: 'x'.repeat(TOKEN.length) },
    { name: 'token with one byte changed', token: `${TOKEN.slice(0, -1)}X` },
    { name: 'a prefix of the token', token: TOKEN.slice(0, 8) },
    { name: 'the token plus one byte', token: `${TOKEN}x` },
    { name: 'empty bearer', authorization: 'Bearer ' },
    { name: 'lowercase scheme', authorization: `bearer ${TOKEN}` },
    { name: 'basic scheme', authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` },
    { name: 'bare token', authorization: TOKEN },
  ];
  for (const route of mutating) {
    const { path, body, type } = valid[route] as { path: string; body?: string; type?: string };
    const method = route.split(' ')[0] as string;
    for (const w of wrong) {
      const res = await call(base, method, path, { ...w, body, type });
      assert.equal(res.status, 401, `${route} with ${w.name}: ${res.text}`);
      assert.ok(!SECRETS.some((s) => res.text.includes(s)), `${route} with ${w.name} answers no secret`);
    }
  }
  assert.equal(await snapshot(base), before, 'nothing changed after the refused calls');
  assert.equal(velocity.lastReload, undefined, 'no reload ran');

  // The same calls with the token are accepted (so the refusals above were about the token).
  for (const route of mutating) {
    const { path, body, type, accepted } = valid[route] as { path: string; body?: string; type?: string; accepted?: number };
    const res = await call(base, route.split(' ')[0] as string, path, { token: TOKEN, body, type });
    if (accepted !== undefined) assert.equal(res.status, accepted, `${route} with the token: ${res.text}`);
    else assert.ok(res.status >= 200 && res.status < 300, `${route} with the token: ${res.status} ${res.text}`);
  }
  assert.notEqual(await snapshot(base), before, 'the accepted calls changed the state');
});

test('a JSON body over the size limit gets 413 and malformed JSON gets 400 on every route that takes a body', async (t) => {
  const { base } = await startSurface(t);
  const routes: [string, string][] = [
    ['POST', '/api/v1/services/app/servers'],
    ['PATCH', `/api/v1/services/app/servers/${encodeURIComponent('127.0.0.1:1')}`],
    ['POST', '/api/v1/blocklist'],
    ['POST', '/api/v1/config/reload'],
    ['POST', '/api/v1/config/validate'],
  ];
  const before = await snapshot(base);
  const huge = JSON.stringify({ cidr: '10.0.0.1', reason: 'x'.repeat(2 * 1024 * 1024) });
  for (const [method, path] of routes) {
    const big = await call(base, method, path, { token: TOKEN, body: huge });
    assert.equal(big.status, 413, `${method} ${path} with 2 MB: ${big.text.slice(0, 200)}`);
    for (const bad of ['{', '{"url": }', '[1,2', 'nul', '{"a":1}}', '\u0000']) {
      const res = await call(base, method, path, { token: TOKEN, body: bad });
      assert.equal(res.status, 400, `${method} ${path} with ${JSON.stringify(bad)}: ${res.text}`);
      assert.match(JSON.parse(res.text).error, /malformed JSON/);
    }
  }
  assert.equal(await snapshot(base), before, 'nothing changed');
});

test('admin.token, the Redis password and the PostgreSQL password never appear in the API, /metrics or the log', async (t) => {
  const { base, lines, yaml } = await startSurface(t);
  // Exercise what writes log lines and API answers: reloads (good and rejected), a refused call,
  // a failing log store (nothing listens on its port) and Redis being unreachable.
  assert.equal((await call(base, 'POST', '/api/v1/config/reload', { token: TOKEN, body: yaml, type: 'text/yaml' })).status, 200);
  const broken = yaml.replace('servers: [', 'servers: [not-a-url, ');
  assert.equal((await call(base, 'POST', '/api/v1/config/reload', { token: TOKEN, body: broken, type: 'text/yaml' })).status, 400);
  assert.equal((await call(base, 'POST', '/api/v1/config/validate', { body: broken, type: 'text/yaml' })).status, 200);
  assert.equal((await call(base, 'POST', '/api/v1/config/reload', { token: 'wrong-token-0123456789', body: yaml, type: 'text/yaml' })).status, 401);
  await new Promise((r) => setTimeout(r, 1_500));

  const config = await call(base, 'GET', '/api/v1/config');
  assert.equal(config.status, 200);
  const shown = JSON.parse(config.text) as { config: { admin: { token?: string }; state: { url?: string }; logs: { url?: string } } };
  assert.equal(shown.config.admin.token, '(set)');
  assert.match(String(shown.config.state.url), /^redis:\/\/.*127\.0\.0\.1:\d+/, 'the Redis URL is shown without its password');
  assert.match(String(shown.config.logs.url), /^postgres:\/\/velocity:.*@127\.0\.0\.1:\d+\/postgres$/, 'the PostgreSQL URL is shown without its password');
  const outputs: [string, string][] = [['GET /api/v1/config', config.text]];
  for (const path of ['/api/v1/config/reload', '/api/v1/services', '/api/v1/openapi.json', '/api/v1/live', '/api/v1/blocklist', '/api/v1/autoscale']) {
    outputs.push([`GET ${path}`, (await call(base, 'GET', path)).text]);
  }
  outputs.push(['GET /metrics', (await call(base, 'GET', '/metrics')).text]);
  outputs.push(['the process log', lines.join('')]);
  assert.ok(/redis unreachable|redis not reachable/.test(lines.join('')), 'Redis being unreachable was logged');
  assert.ok(/log store (unavailable|write failed)/.test(lines.join('')), 'the log store failing was logged');
  for (const [where, text] of outputs) {
    for (const secret of SECRETS) assert.ok(!text.includes(secret), `${where} contains the secret ${secret}`);
  }
});
