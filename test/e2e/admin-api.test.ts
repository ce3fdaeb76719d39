/** The admin API end to end: live changes under load, auth, bad input, OpenAPI. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { request } from 'undici';
import { delay, eventually, get, load, startBackends, startInProcess, startVelocityProcess, testAgent } from '../support/velocity.ts';

const TOKEN = 'test-token-0123456789abcdef';

async function api(port: number, method: string, path: string, body?: unknown, token: string | null = TOKEN, raw?: string) {
  const res = await request(`http://127.0.0.1:${port}${path}`, {
    method: method as 'GET',
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined || raw !== undefined ? { 'content-type': raw !== undefined ? 'text/yaml' : 'application/json' } : {}),
    },
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: text ? JSON.parse(text) : undefined };
}

const yamlFor = (servers: string[], extra = '') => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: ${TOKEN} }
services:
  - name: app
    policy: weighted-round-robin
    servers: [${servers.join(', ')}]
    health: { type: http, interval: 200ms, timeout: 5s, unhealthy_threshold: 3 }
${extra}`;

describe('admin API under load', () => {
  test('adds a server (serving within a second), drains and removes another with zero client errors, and re-weights the split', async (t) => {
    const backends = await startBackends(t, 3);
    const [b1, b2, b3] = backends;
    const velocity = await startInProcess(t, yamlFor([b1?.url as string, b2?.url as string]));
    const admin = velocity.adminAddress?.port as number;
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const failures: number[] = [];
    const hits = new Map<string, number>();
    let stop = false;
    /** Requests sent once b1 was removed that b1 answered (one sent before may still finish during the drain). */
    let b1Removed = false;
    let b1AfterRemoval = 0;
    const traffic = load(4_000, 8, async () => {
      if (stop) return;
      const sentAfterRemoval = b1Removed;
      const r = await get(agent, `${url}?delay=20`);
      if (r.status !== 200) failures.push(r.status);
      hits.set(String(r.headers['x-backend']), (hits.get(String(r.headers['x-backend'])) ?? 0) + 1);
      if (sentAfterRemoval && r.headers['x-backend'] === 'b1') b1AfterRemoval++;
    });
    await delay(300);

    const addedAt = Date.now();
    const added = await api(admin, 'POST', '/api/v1/services/app/servers', { url: b3?.url, weight: 1 });
    assert.equal(added.status, 201);
    assert.equal(added.json.source, 'api');
    assert.equal(added.json.diverges_from_file, true);
    const firstHit = await eventually(() => (hits.get('b3') ?? 0) > 0, 1_000, 'the new server receives requests');
    const effectMs = Date.now() - addedAt;

    const removed = await api(admin, 'DELETE', `/api/v1/services/app/servers/127.0.0.1:${b1?.port}`);
    assert.equal(removed.status, 202);
    await eventually(() => velocity.controlPlane.servers('app').every((s) => s.spec.id !== `127.0.0.1:${b1?.port}`), 5_000, 'b1 drained and removed');
    b1Removed = true;

    const reweighted = await api(admin, 'PATCH', `/api/v1/services/app/servers/127.0.0.1:${b2?.port}`, { weight: 3 });
    assert.equal(reweighted.status, 200);
    assert.equal(reweighted.json.weight, 3);
    const before2 = hits.get('b2') ?? 0;
    const before3 = hits.get('b3') ?? 0;
    await delay(800);
    stop = true;
    await traffic;
    const share2 = (hits.get('b2') ?? 0) - before2;
    const share3 = (hits.get('b3') ?? 0) - before3;
    assert.deepEqual(failures, [], 'zero client errors');
    assert.equal(b1AfterRemoval, 0, 'no request sent after its removal reached b1');
    assert.ok(share2 / (share2 + share3) > 0.68 && share2 / (share2 + share3) < 0.82, `split ${share2}:${share3} follows 3:1`);
    console.log(`admin API: add took effect in ${effectMs} ms (first request on the new server after ${firstHit} ms)`);
  });

  test('rewriting the config file under load: zero failures, unchanged servers keep their state, a broken file is rejected with line and column', async (t) => {
    const backends = await startBackends(t, 3);
    const [b1, b2, b3] = backends;
    const velocity = await startVelocityProcess(t, yamlFor([b1?.url as string, b2?.url as string]));
    const admin = Number((await velocity.logs.waitFor(/"admin":"127\.0\.0\.1:(\d+)"/))[1]);
    const agent = testAgent(t);
    // b2 is disabled through the API; that state must survive the reloads.
    assert.equal((await api(admin, 'PATCH', `/api/v1/services/app/servers/127.0.0.1:${b2?.port}`, { state: 'disabled' })).status, 200);
    const failures: number[] = [];
    let stop = false;
    const traffic = load(5_000, 6, async () => {
      if (stop) return;
      const r = await get(agent, velocity.url);
      if (r.status !== 200) failures.push(r.status);
    });
    await delay(300);
    writeFileSync(velocity.configFile, yamlFor([b1?.url as string, b2?.url as string, b3?.url as string]));
    await eventually(async () => (await api(admin, 'GET', '/api/v1/config/reload')).json.version === 2, 5_000, 'the new file is applied');
    writeFileSync(velocity.configFile, `${yamlFor([b1?.url as string])}    bogus_field: 1\n`);
    const rejected = await eventually(async () => (await api(admin, 'GET', '/api/v1/config/reload')).json.ok === false, 5_000, 'the broken file is rejected');
    assert.ok(rejected >= 0);
    const last = (await api(admin, 'GET', '/api/v1/config/reload')).json;
    assert.match(last.errors[0], /velocity\.yaml:8:5: services\[0\]\.bogus_field: unknown field/);
    await delay(300);
    stop = true;
    await traffic;
    assert.deepEqual(failures, []);
    const servers = (await api(admin, 'GET', '/api/v1/services/app')).json.servers as { id: string; state: string }[];
    assert.equal(servers.length, 3, 'the broken file changed nothing');
    assert.equal(servers.find((s) => s.id === `127.0.0.1:${b2?.port}`)?.state, 'disabled', 'b2 stayed disabled across reloads');
  });

  test('a server ejected before a reload is still ejected after it', async (t) => {
    const backends = await startBackends(t, 2);
    const velocity = await startInProcess(t, yamlFor(backends.map((b) => b.url)));
    const server = () => velocity.dataPlane.service('app')?.servers[0];
    const ejected = server();
    assert.ok(ejected);
    ejected.ejectedUntil = Date.now() + 60_000;
    ejected.ejections = 1;
    const result = await velocity.reload({ ...velocity.config, shutdown_timeout: 1234 });
    assert.equal(result.ok, true);
    assert.ok((server()?.ejectedUntil ?? 0) > Date.now() + 50_000);
    assert.equal(server()?.ejections, 1);
  });
});

describe('admin API input and auth', () => {
  test('every mutating route refuses a missing or wrong token with 401 and changes nothing', async (t) => {
    const [b1] = await startBackends(t, 1);
    const velocity = await startInProcess(t, yamlFor([b1?.url as string]));
    const admin = velocity.adminAddress?.port as number;
    const mutating = velocity.admin.list().filter((r) => r.mutates);
    assert.ok(mutating.length >= 4);
    for (const route of mutating) {
      const path = route.path.replace(':service', 'app').replace(':server', `127.0.0.1:${b1?.port}`);
      for (const token of [null, 'wrong-token-wrong-token-x']) {
        const r = await api(admin, route.method, path, route.method === 'DELETE' ? undefined : { url: 'http://127.0.0.1:1' }, token);
        assert.equal(r.status, 401, `${route.method} ${route.path} with ${token ?? 'no token'}`);
      }
    }
    assert.equal(velocity.controlPlane.servers('app').length, 1);
    assert.equal((await api(admin, 'GET', '/api/v1/services', undefined, null)).status, 200, 'reads on loopback need no token');
  });

  test('bad input gets 400/404/409 naming the field, and nothing changes', async (t) => {
    const [b1] = await startBackends(t, 1);
    const velocity = await startInProcess(t, yamlFor([b1?.url as string]));
    const admin = velocity.adminAddress?.port as number;
    const malformed = await request(`http://127.0.0.1:${admin}/api/v1/services/app/servers`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: '{"url": ',
    });
    assert.equal(malformed.statusCode, 400);
    assert.match(((await malformed.body.json()) as { error: string }).error, /malformed JSON/);
    const unknown = await api(admin, 'POST', '/api/v1/services/app/servers', { url: 'http://127.0.0.1:9', wieght: 2 });
    assert.deepEqual([unknown.status, unknown.json.field], [400, 'wieght']);
    const badUrl = await api(admin, 'POST', '/api/v1/services/app/servers', { url: 'not a url' });
    assert.deepEqual([badUrl.status, badUrl.json.field], [400, 'url']);
    const dup = await api(admin, 'POST', '/api/v1/services/app/servers', { url: b1?.url });
    assert.deepEqual([dup.status, dup.json.field], [409, 'url']);
    const missing = await api(admin, 'DELETE', '/api/v1/services/app/servers/127.0.0.1:1');
    assert.deepEqual([missing.status, missing.json.field], [404, 'server']);
    const noService = await api(admin, 'GET', '/api/v1/services/nope');
    assert.equal(noService.status, 404);
    const badWeight = await api(admin, 'PATCH', `/api/v1/services/app/servers/127.0.0.1:${b1?.port}`, { weight: 0 });
    assert.deepEqual([badWeight.status, badWeight.json.field], [400, 'weight']);
    assert.equal(velocity.controlPlane.servers('app').length, 1);
    assert.equal(velocity.dataPlane.service('app')?.servers[0]?.configuredWeight, 1);
  });

  test('concurrent changes are applied in order and none is lost', async (t) => {
    const backends = await startBackends(t, 1);
    const velocity = await startInProcess(t, yamlFor([backends[0]?.url as string]));
    const admin = velocity.adminAddress?.port as number;
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => api(admin, 'POST', '/api/v1/services/app/servers', { url: `http://127.0.0.1:${20000 + i}` })));
    assert.ok(results.every((r) => r.status === 201));
    assert.equal(velocity.controlPlane.servers('app').length, 21);
    const weights = await Promise.all(Array.from({ length: 10 }, (_, i) => api(admin, 'PATCH', `/api/v1/services/app/servers/127.0.0.1:${backends[0]?.port}`, { weight: i + 1 })));
    assert.ok(weights.every((r) => r.status === 200));
    assert.equal(velocity.dataPlane.service('app')?.servers[0]?.configuredWeight, 10, 'the last change wins');
  });

  test('validate checks a posted config and reports line and column without applying it', async (t) => {
    const [b1] = await startBackends(t, 1);
    const velocity = await startInProcess(t, yamlFor([b1?.url as string]));
    const admin = velocity.adminAddress?.port as number;
    const bad = await api(admin, 'POST', '/api/v1/config/validate', undefined, null, 'services:\n  - name: x\n    polcy: round-robin\n');
    assert.equal(bad.json.ok, false);
    assert.match(bad.json.errors[0], /posted\.yaml:3:5: services\[0\]\.polcy: unknown field "polcy" \(did you mean "policy"\?\)/);
    const good = await api(admin, 'POST', '/api/v1/config/validate', undefined, null, 'services:\n  - name: x\n');
    assert.equal(good.json.ok, true);
    const config = await api(admin, 'GET', '/api/v1/config');
    assert.equal(config.json.config.admin.token, '(set)', 'the token is never shown');
  });

  test('start refuses a non-loopback admin address without a token', async (t) => {
    await assert.rejects(
      startVelocityProcess(t, `listen: "127.0.0.1:0"\nadmin: { listen: "0.0.0.0:0" }\nservices:\n  - name: a\n    servers: [http://127.0.0.1:1]\n`),
      /not loopback, and admin\.token is not set/,
    );
  });
});

describe('OpenAPI', () => {
  test('the document validates as OpenAPI 3.1 and lists exactly the registered routes', async (t) => {
    const [b1] = await startBackends(t, 1);
    const velocity = await startInProcess(t, yamlFor([b1?.url as string]));
    const doc = (await api(velocity.adminAddress?.port as number, 'GET', '/api/v1/openapi.json', undefined, null)).json;
    const result = await new Validator().validate(doc);
    assert.equal(result.valid, true, JSON.stringify(result.errors));
    assert.equal(doc.openapi, '3.1.0');
    const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    const registered = velocity.admin.list().map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
    assert.deepEqual(documented.sort(), registered.sort());
  });
});
