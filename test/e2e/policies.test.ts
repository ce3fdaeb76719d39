/** Balancing policies end to end through real backends. */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfigFile, parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { silentLogger } from '../../src/observe/logger.ts';
import { start } from '../../src/runtime/instance.ts';
import { eventually, get, load, startApp, startBackendProcess, startBackends, testAgent } from '../support/velocity.ts';

describe('sticky sessions', () => {
  test('the cookie keeps a client on one server, moves it when that server dies, and a forged cookie just gets a fresh choice', async (t) => {
    const backends = await startBackends(t, 3);
    const velocity = await startApp(
      t,
      `policy: round-robin
sticky: { cookie: srv, ttl: 1h, secret: "a-secret-of-sixteen+" }
servers: [${backends.map((b) => b.url).join(', ')}]
health: { type: http, interval: 200ms, timeout: 2s, unhealthy_threshold: 1 }
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
    // The home server dies: the client moves (a dead server refuses at once; the long check timeout only
    // keeps a live one from being marked down by a check that a loaded machine answered late), and its cookie is rewritten.
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

describe('sticky sessions beside the application', () => {
  test('the server’s own Set-Cookie headers reach the client beside the sticky cookie', async (t) => {
    const app = createServer((_req, res) => {
      res.setHeader('set-cookie', ['session=abc; Path=/; HttpOnly', 'theme=dark; Path=/']);
      res.end('ok');
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    t.after(() => app.close());
    const velocity = await startApp(
      t,
      `sticky: { cookie: srv }
servers: ["http://127.0.0.1:${(app.address() as AddressInfo).port}"]
`,
    );
    const r = await get(testAgent(t), `http://127.0.0.1:${velocity.address.port}/`);
    const cookies = ([] as string[]).concat(r.headers['set-cookie'] ?? []);
    assert.deepEqual(
      cookies.map((c) => c.split('=')[0]),
      ['session', 'theme', 'srv'],
    );
  });
});

describe('least-response-time', () => {
  test('sheds load from a backend that slows down and gives it back when it recovers', async (t) => {
    const backends = await startBackends(t, 3);
    const velocity = await startApp(
      t,
      `policy: least-response-time
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
  test('the TypeScript example module loads from the config file folder and routes', async (t) => {
    const backends = await startBackends(t, 3);
    const dir = mkdtempSync(join(tmpdir(), 'velocity-policy-'));
    copyFileSync(fileURLToPath(new URL('../../examples/custom-policy.ts', import.meta.url)), join(dir, 'custom-policy.ts'));
    const file = join(dir, 'velocity.yaml');
    writeFileSync(
      file,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    policy: { module: ./custom-policy.ts, options: { canary: canary-1, percent: 25 } }
    servers:
      - { url: "${backends[0]?.url}", name: stable-1 }
      - { url: "${backends[1]?.url}", name: stable-2 }
      - { url: "${backends[2]?.url}", name: canary-1 }
`,
    );
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

  test('bad policy settings are config errors with line and column', () => {
    const problem = (service: string) => {
      try {
        parseConfig(`services:\n  - name: a\n${service}`, 'v.yaml');
      } catch (err) {
        return (err as ConfigError).problems[0];
      }
      assert.fail('accepted');
    };
    for (const [service, path, line, column, message] of [
      ['    policy: least-conections\n', 'services[0].policy', 3, 13, /unknown policy "least-conections".*did you mean "least-connections"/],
      ['    policy: { name: header-hash }\n', 'services[0].policy.header', 3, 13, /header-hash needs header/],
      ['    policy: { name: cookie-hash, cookie: "bad name;" }\n', 'services[0].policy.cookie', 3, 42, /illegal characters for a cookie name/],
      ['    policy: { name: ip-hash, fallbak: round-robin }\n', 'services[0].policy.fallbak', 3, 39, /unknown field "fallbak" \(did you mean "fallback"\?\)/],
      ['    policy: { name: round-robin, header: x-user }\n', 'services[0].policy.header', 3, 42, /round-robin takes no options/],
      ['    policy: { name: url-hash, fallback: ip-hash }\n', 'services[0].policy.fallback', 3, 41, /fallback must name a policy that needs no key/],
      ['    sticky:\n      cookie: "a=b"\n', 'services[0].sticky.cookie', 4, 15, /illegal characters for a cookie name/],
    ] as const) {
      const p = problem(service);
      assert.deepEqual([p?.path, p?.line, p?.column], [path, line, column], service);
      assert.match(p?.message ?? '', message);
    }
  });
});
