/** Balancing policies end to end through real backends. */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfigFile, parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { delay, eventually, get, load, startBackends, startInProcess, testAgent } from '../support/velocity.ts';

describe('sticky sessions', () => {
  test('the cookie keeps a client on one server, moves it when that server dies, and a forged cookie just gets a fresh choice', async (t) => {
    const backends = await startBackends(t, 3);
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    policy: round-robin
    sticky: { cookie: srv, ttl: 1h, secret: "a-secret-of-sixteen+" }
    servers: [${backends.map((b) => b.url).join(', ')}]
    health: { type: http, interval: 200ms, timeout: 200ms, unhealthy_threshold: 1 }
    retries: { attempts: 1 }
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const first = await get(agent, url);
    const setCookie = String(first.headers['set-cookie']);
    assert.match(setCookie, /^srv=[\w-]{22}; Path=\/; SameSite=Lax; Max-Age=3600; HttpOnly$/);
    const token = (setCookie.split(';')[0] as string).slice(4);
    assert.ok(!backends.some((b) => token.includes(String(b.port))) && !token.includes('127'), 'the cookie does not reveal the address');
    const cookie = setCookie.split(';')[0] as string;
    const home = first.headers['x-backend'];
    for (let i = 0; i < 12; i++) {
      const r = await get(agent, url, { headers: { cookie } });
      assert.equal(r.headers['x-backend'], home);
      assert.equal(r.headers['set-cookie'], undefined, 'a valid cookie is not rewritten');
    }
    const forged = await get(agent, url, { headers: { cookie: 'srv=AAAAAAAAAAAAAAAAAAAAAA' } });
    assert.equal(forged.status, 200);
    assert.match(String(forged.headers['set-cookie']), /^srv=/);
    // The home server dies: the client moves, and its cookie is rewritten.
    await backends.find((b) => b.name === home)?.stop('SIGKILL');
    await eventually(() => velocity.dataPlane.service('app')?.servers.some((s) => !s.activeUp) === true, 3_000, 'the dead server is marked down');
    const moved = await get(agent, url, { headers: { cookie } });
    assert.equal(moved.status, 200);
    assert.notEqual(moved.headers['x-backend'], home);
    const newCookie = String(moved.headers['set-cookie']).split(';')[0] as string;
    assert.notEqual(newCookie, cookie);
    for (let i = 0; i < 5; i++) assert.equal((await get(agent, url, { headers: { cookie: newCookie } })).headers['x-backend'], moved.headers['x-backend']);
  });
});

describe('hash policies', () => {
  test('ip-hash keeps 127.0.0.1 and ::1 clients each on a stable server', async (t) => {
    const backends = await startBackends(t, 4);
    const velocity = await startInProcess(
      t,
      `listen: ["127.0.0.1:0", "[::1]:0"]
admin: { enabled: false }
services:
  - name: app
    policy: ip-hash
    servers: [${backends.map((b) => b.url).join(', ')}]
`,
    );
    const agent = testAgent(t);
    for (const base of [`http://127.0.0.1:${velocity.addresses[0]?.port}/`, `http://[::1]:${velocity.addresses[1]?.port}/`]) {
      const seen = new Set<string>();
      for (let i = 0; i < 10; i++) seen.add(String((await get(agent, base)).headers['x-backend']));
      assert.equal(seen.size, 1, `${base}: ${[...seen].join(',')}`);
    }
  });

  test('header-hash maps each key to one server and falls back without the header', async (t) => {
    const backends = await startBackends(t, 3);
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    policy: { name: header-hash, header: x-user, fallback: round-robin }
    servers: [${backends.map((b) => b.url).join(', ')}]
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const homes = new Map<string, Set<string>>();
    for (let round = 0; round < 3; round++) {
      for (let u = 0; u < 12; u++) {
        const r = await get(agent, url, { headers: { 'x-user': `user-${u}` } });
        (homes.get(`user-${u}`) ?? homes.set(`user-${u}`, new Set()).get(`user-${u}`))?.add(String(r.headers['x-backend']));
      }
    }
    for (const set of homes.values()) assert.equal(set.size, 1);
    assert.ok(new Set([...homes.values()].map((s) => [...s][0])).size >= 2, 'keys spread over servers');
    const fallback = new Set<string>();
    for (let i = 0; i < 6; i++) fallback.add(String((await get(agent, url)).headers['x-backend']));
    assert.equal(fallback.size, 3, 'no header: round robin');
  });
});

describe('least-response-time', () => {
  test('sheds load from a backend that slows down and gives it back when it recovers', async (t) => {
    const backends = await startBackends(t, 3);
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    policy: least-response-time
    servers: [${backends.map((b) => b.url).join(', ')}]
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const share = async (n: number) => {
      let b1 = 0;
      await load(n, 6, async () => {
        if ((await get(agent, url)).headers['x-backend'] === 'b1') b1++;
      });
      return b1 / n;
    };
    // b1 slows down: restarted on its port with 150 ms added to every answer.
    await backends[0]?.stop('SIGKILL');
    const { startBackendProcess } = await import('../support/velocity.ts');
    const slowB1 = await startBackendProcess(t, 'b1', ['--delay', '150'], backends[0]?.port);
    await share(60);
    const slowShare = await share(150);
    assert.ok(slowShare < 0.15, `slow b1 got ${(slowShare * 100).toFixed(1)}% of requests`);
    // b1 recovers: its cost decays and real samples bring its share back.
    await slowB1.stop('SIGKILL');
    await startBackendProcess(t, 'b1', [], backends[0]?.port);
    const recovered = await eventually(async () => (await share(60)) > 0.2, 20_000, 'b1 regains share after it recovers');
    console.log(`least-response-time: slow share ${(slowShare * 100).toFixed(1)}%, share back above 20% ${recovered} ms after recovery`);
  });
});

describe('custom policies', () => {
  test('the example module loads from the config file folder and routes', async (t) => {
    const backends = await startBackends(t, 3);
    const dir = mkdtempSync(join(tmpdir(), 'velocity-policy-'));
    copyFileSync(fileURLToPath(new URL('../../examples/custom-policy.js', import.meta.url)), join(dir, 'custom-policy.js'));
    const file = join(dir, 'velocity.yaml');
    writeFileSync(
      file,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    policy: { module: ./custom-policy.js, options: { canary: canary-1, percent: 25 } }
    servers:
      - { url: "${backends[0]?.url}", name: stable-1 }
      - { url: "${backends[1]?.url}", name: stable-2 }
      - { url: "${backends[2]?.url}", name: canary-1 }
`,
    );
    const { start } = await import('../../src/runtime/instance.ts');
    const { silentLogger } = await import('../../src/observe/logger.ts');
    const velocity = await start(file, { logger: silentLogger(), watchConfig: false });
    t.after(() => velocity.close());
    const agent = testAgent(t);
    const hits = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const who = String((await get(agent, `http://127.0.0.1:${velocity.address.port}/`)).headers['x-backend']);
      hits.set(who, (hits.get(who) ?? 0) + 1);
    }
    const canary = (hits.get('b3') ?? 0) / 200;
    assert.ok(canary > 0.12 && canary < 0.4, `canary share ${canary}`);
    assert.ok(Math.abs((hits.get('b1') ?? 0) - (hits.get('b2') ?? 0)) <= 2, 'the rest in rotation');
  });

  test('a module that cannot load or does not implement the interface is a config error naming the path, line and column', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'velocity-policy-'));
    writeFileSync(join(dir, 'not-a-policy.js'), 'export default 42;\n');
    const file = join(dir, 'velocity.yaml');
    for (const [module, expected] of [
      ['./missing.js', /cannot load policy module .*missing\.js/],
      ['./not-a-policy.js', /must export a factory function/],
    ] as const) {
      writeFileSync(file, `services:\n  - name: app\n    policy:\n      module: ${module}\n`);
      const err = await loadConfigFile(file).catch((e: unknown) => e);
      assert.ok(err instanceof ConfigError);
      const p = err.problems[0];
      assert.deepEqual([p?.path, p?.line, p?.column], ['services[0].policy.module', 4, 15]);
      assert.match(p?.message ?? '', expected);
    }
  });

  test('a hash policy without its key and an illegal cookie name are config errors', () => {
    const problem = (policy: string) => {
      try {
        parseConfig(`services:\n  - name: a\n    policy: ${policy}\n`, 'v.yaml');
      } catch (err) {
        return (err as ConfigError).problems[0];
      }
      assert.fail('accepted');
    };
    const header = problem('{ name: header-hash }');
    assert.equal(header?.line, 3);
    assert.match(header?.message ?? '', /header-hash needs header/);
    const cookie = problem('{ name: cookie-hash, cookie: "bad name;" }');
    assert.match(cookie?.message ?? '', /illegal characters for a cookie name/);
  });
});
