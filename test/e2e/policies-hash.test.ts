/** Hash policies end to end through real backends: stable homes, failover and return, and agreement between instances. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Agent } from 'undici';
import { eventually, get, startBackends, startInProcess, testAgent } from '../support/velocity.ts';

const USERS = Array.from({ length: 30 }, (_, i) => `user-${i}`);

/** Which backend answers each user (by the x-user header). */
async function homes(agent: Agent, url: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const user of USERS) out.set(user, String((await get(agent, url, { headers: { 'x-user': user } })).headers['x-backend']));
  return out;
}

const headerHashConfig = (servers: string[], extra = '') => `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    policy: { name: header-hash, header: x-user, fallback: round-robin }
    servers: [${servers.join(', ')}]
${extra}`;

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
    const bases = [`http://127.0.0.1:${velocity.addresses[0]?.port}/`, `http://[::1]:${velocity.addresses[1]?.port}/`];
    for (const base of bases) {
      const seen = new Set<string>();
      for (let i = 0; i < 10; i++) seen.add(String((await get(agent, base)).headers['x-backend']));
      assert.equal(seen.size, 1, `${base}: ${[...seen].join(',')}`);
    }
  });

  test('header-hash maps each key to one server, spreads keys, and falls back to round robin without the header', async (t) => {
    const backends = await startBackends(t, 3);
    const velocity = await startInProcess(t, headerHashConfig(backends.map((b) => b.url)));
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const first = await homes(agent, url);
    assert.deepEqual(await homes(agent, url), first, 'every key on the same server again');
    const counts = new Map<string, number>();
    for (const name of first.values()) counts.set(name, (counts.get(name) ?? 0) + 1);
    assert.equal(counts.size, 3, `30 keys over 3 servers: ${JSON.stringify([...counts])}`);
    const fallback = new Set<string>();
    for (let i = 0; i < 6; i++) fallback.add(String((await get(agent, url)).headers['x-backend']));
    assert.equal(fallback.size, 3, 'no header: round robin');
  });

  test('a dead server’s keys move to the next server (the same one each time), the others stay, and all return when it recovers', async (t) => {
    const backends = await startBackends(t, 3);
    const velocity = await startInProcess(
      t,
      headerHashConfig(
        backends.map((b) => b.url),
        '    health: { type: http, interval: 200ms, timeout: 2s, unhealthy_threshold: 1, healthy_threshold: 1 }\n',
      ),
    );
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const before = await homes(agent, url);
    const victim = backends.find((b) => b.name === before.get('user-0'));
    assert.ok(victim);
    const servers = () => velocity.dataPlane.service('app')?.servers ?? [];

    await victim.stop('SIGKILL');
    await eventually(() => servers().some((s) => !s.activeUp), 5_000, 'the dead server is marked down');
    const during = await homes(agent, url);
    assert.deepEqual(await homes(agent, url), during, 'the next choice is the same every time');
    for (const user of USERS) {
      if (before.get(user) === victim.name) assert.notEqual(during.get(user), victim.name, `${user} moved off the dead server`);
      else assert.equal(during.get(user), before.get(user), `${user} stayed on its own server`);
    }

    await victim.restart();
    await eventually(() => servers().every((s) => s.activeUp), 5_000, 'the server is back');
    assert.deepEqual(await homes(agent, url), before, 'every key is back on its own server');
  });

  test('two instances with the same servers (listed in any order) send every key to the same server', async (t) => {
    const backends = await startBackends(t, 3);
    const urls = backends.map((b) => b.url);
    const one = await startInProcess(t, headerHashConfig(urls));
    const two = await startInProcess(t, headerHashConfig([...urls].reverse()));
    const agent = testAgent(t);
    assert.deepEqual(await homes(agent, `http://127.0.0.1:${two.address.port}/`), await homes(agent, `http://127.0.0.1:${one.address.port}/`));
  });
});
