/**
 * A fleet: three Velocity instances on one shared config in a real 3-member etcd cluster.
 * One cluster and one fleet serve every case of this file, in order (each case leaves the
 * fleet running and healthy for the next).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { Agent } from 'undici';
import { start } from '../../src/runtime/instance.ts';
import { launchChromium } from '../support/chromium.ts';
import { type EtcdCluster, startEtcdCluster } from '../support/etcd.ts';
import { backend, body, call, etcdLink, fleetView, type Member, serverIds, sharedConfig, startMember, TOKEN } from '../support/fleet.ts';
import { assertNoInternalErrors, watchLogger } from '../support/internal-errors.ts';
import { runCommand } from '../support/spawn.ts';
import { CLI, eventually } from '../support/velocity.ts';

const PREFIX = '/velocity/test';
const WAIT = 60_000;

/** Bounded load over every member's listener; counts what did not come back 200. */
function loadUntilStopped(agent: Agent, members: Member[]): { stop: () => Promise<{ sent: number; failed: string[] }> } {
  let running = true;
  let sent = 0;
  const failed: string[] = [];
  const deadline = Date.now() + 120_000;
  const worker = async (i: number) => {
    while (running && Date.now() < deadline && sent < 200_000) {
      const m = members[(sent + i) % members.length] as Member;
      sent++;
      try {
        const r = await body(agent, `${m.url}/`);
        if (r.status !== 200) failed.push(`${m.name}: ${r.status} ${r.text.slice(0, 80)}`);
      } catch (err) {
        failed.push(`${m.name}: ${(err as Error).message}`);
      }
    }
  };
  const workers = Promise.all([0, 1, 2, 3].map(worker));
  return {
    stop: async () => {
      running = false;
      await workers;
      return { sent, failed };
    },
  };
}

async function push(cluster: EtcdCluster, dir: string, text: string): Promise<string> {
  const file = join(dir, `shared-${Date.now()}.yaml`);
  writeFileSync(file, text);
  const r = await runCommand(process.execPath, [CLI, 'config', 'push', file, '--etcd', cluster.endpoints.join(','), '--prefix', PREFIX], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

test('three instances on a shared config in a 3-member etcd cluster act as one fleet', { timeout: 600_000 }, async (t) => {
  const cluster = await startEtcdCluster(t);
  if (!cluster) return;
  const dir = mkdtempSync(join(tmpdir(), 'velocity-fleet-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const agent = new Agent({ keepAliveTimeout: 1_000, connections: 32 });
  t.after(() => agent.close());
  const b1 = await backend(t, 'b1');
  const b2 = await backend(t, 'b2');
  const b3 = await backend(t, 'b3');

  const pushed = await push(cluster, dir, sharedConfig([b1.url]));
  assert.match(pushed, /pushed .* to \/velocity\/test\/config at revision \d+/);

  const members: Member[] = [];
  const internal: string[] = [];
  // C reaches etcd through forwarders the test can cut (a partition of C alone).
  const linkC = await etcdLink(t, cluster.endpoints);
  for (const name of ['A', 'B', 'C']) {
    const endpoints = name === 'C' ? linkC.endpoints : cluster.endpoints;
    members.push(await startMember(t, dir, name, { endpoints, prefix: PREFIX }, internal, name === 'C' ? 'info' : 'warn'));
  }
  t.after(() => assertNoInternalErrors(internal, 'the fleet'));
  const [A, B, C] = members as [Member, Member, Member];

  await eventually(
    async () => (await Promise.all(members.map((m) => fleetView(agent, m)))).every((v) => v.etcd.reachable && v.instances.length === 3),
    WAIT,
    'every instance sees the three members',
  );
  for (const m of members) assert.equal((await body(agent, `${m.url}/`)).text, 'b1', `${m.name} serves the shared config`);

  await t.test('B’s dashboard shows the whole fleet', async (tt) => {
    const browser = await launchChromium(tt);
    if (!browser) return;
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${B.admin}/`);
    await page.waitForSelector('#fleet-section[data-etcd="reachable"]', { timeout: WAIT });
    await page.waitForFunction('document.querySelectorAll(\'#fleet-table tbody tr[data-config="ok"]\').length === 3', undefined, { timeout: WAIT });
    const rows = await Promise.all((await page.$$('#fleet-table tbody tr')).map((tr) => tr.getAttribute('data-id')));
    assert.deepEqual([...rows].sort(), ['A', 'B', 'C']);
    assert.match((await page.textContent('#fleet-table tbody tr[data-id="B"] .id')) ?? '', /this one/);
    assert.deepEqual(pageErrors, []);
  });

  await t.test('a server added through A’s admin API serves on B and C', async () => {
    const started = Date.now();
    const added = await call(agent, 'POST', `${A.admin}/api/v1/services/web/servers`, { url: b2.url });
    assert.equal(added.status, 201, JSON.stringify(added.json));
    const onA = Date.now() - started;
    const times: Record<string, number> = { A: onA };
    await Promise.all(
      [B, C].map(async (m) => {
        await eventually(async () => (await serverIds(agent, m)).length === 2, WAIT, `${m.name} lists the new server`, 5);
        times[m.name] = Date.now() - started;
        await eventually(async () => (await body(agent, `${m.url}/`)).text === 'b2', WAIT, `${m.name} sends requests to b2`, 5);
      }),
    );
    t.diagnostic(`propagation (API call on A → listed on each instance, ms): ${JSON.stringify(times)}`);
    assert.ok(Math.max(...Object.values(times)) < WAIT);
  });

  await t.test('50 concurrent server changes through all three instances: none lost', async () => {
    const ids = Array.from({ length: 50 }, (_, i) => `extra-${i}`);
    const results = await Promise.all(
      ids.map((name, i) => call(agent, 'POST', `${(members[i % 3] as Member).admin}/api/v1/services/web/servers`, { url: `http://127.0.0.1:${20_000 + i}`, name })),
    );
    assert.deepEqual(
      results.filter((r) => r.status !== 201),
      [],
    );
    for (const m of members) await eventually(async () => (await serverIds(agent, m)).length === 52, WAIT, `${m.name} runs all 50 new servers`);
    const pulled = await runCommand(process.execPath, [CLI, 'config', 'pull', '--etcd', cluster.endpoints.join(','), '--prefix', PREFIX], { timeoutMs: 60_000 });
    assert.equal(pulled.code, 0, pulled.stderr);
    for (const name of ids) assert.ok(pulled.stdout.includes(`name: ${name}`), `pulled config has ${name}`);
    assert.match(pulled.stdout, /^# the fleet's shared config/, 'comments in the shared config survive API edits');
    const removed = await Promise.all(ids.map((name, i) => call(agent, 'DELETE', `${(members[(i + 1) % 3] as Member).admin}/api/v1/services/web/servers/${name}`)));
    assert.deepEqual(
      removed.filter((r) => r.status !== 202),
      [],
    );
    for (const m of members) await eventually(async () => (await serverIds(agent, m)).length === 2, WAIT, `${m.name} removed all 50`);
  });

  await t.test('drain set through B applies on every instance', async () => {
    const changed = await call(agent, 'PATCH', `${B.admin}/api/v1/services/web/servers/${new URL(b1.url).host}`, { state: 'draining' });
    assert.equal(changed.status, 200, JSON.stringify(changed.json));
    for (const m of members) {
      await eventually(
        async () =>
          ((await call(agent, 'GET', `${m.admin}/api/v1/services/web`)).json.servers as { id: string; state: string }[]).some(
            (s) => s.id === new URL(b1.url).host && s.state === 'draining',
          ),
        WAIT,
        `${m.name} drains b1`,
      );
    }
    assert.equal((await call(agent, 'PATCH', `${C.admin}/api/v1/services/web/servers/${new URL(b1.url).host}`, { state: 'enabled' })).status, 200);
    for (const m of members) {
      await eventually(
        async () => ((await call(agent, 'GET', `${m.admin}/api/v1/services/web`)).json.servers as { id: string; state: string }[]).every((s) => s.state === 'enabled'),
        WAIT,
        `${m.name} enables b1 again`,
      );
    }
  });

  await t.test('a block made through A applies on B and C; removed through C; one with a ttl expires everywhere', async () => {
    const blocked = await call(agent, 'POST', `${A.admin}/api/v1/blocklist`, { cidr: '127.0.0.1', reason: 'fleet test' });
    assert.equal(blocked.status, 201, JSON.stringify(blocked.json));
    for (const m of [B, C]) await eventually(async () => (await body(agent, `${m.url}/`)).status === 403, WAIT, `${m.name} refuses the blocked client`);
    assert.equal((await call(agent, 'DELETE', `${C.admin}/api/v1/blocklist/127.0.0.1`)).status, 200);
    for (const m of members) await eventually(async () => (await body(agent, `${m.url}/`)).status === 200, WAIT, `${m.name} serves the client again`);
    assert.equal((await call(agent, 'POST', `${B.admin}/api/v1/blocklist`, { cidr: '198.51.100.0/24', ttl: '2s' })).status, 201);
    const listed = async (m: Member) => ((await call(agent, 'GET', `${m.admin}/api/v1/blocklist`)).json.entries as { cidr: string }[]).some((e) => e.cidr === '198.51.100.0/24');
    await eventually(() => listed(A), WAIT, 'A lists the block made through B');
    await eventually(async () => !(await listed(A)) && !(await listed(C)), WAIT, 'the block expires on every instance');
    await eventually(async () => (await cluster.client.getAll().prefix(`${PREFIX}/blocklist/`).keys()).length === 0, WAIT, 'etcd drops the expired block (its lease ended)');
  });

  await t.test('a broken config is refused by every instance, its error visible, the last good one serving', async () => {
    const before = (await fleetView(agent, A)).revision as number;
    await cluster.client.put(`${PREFIX}/config`).value('services:\n  - name: web\n    servers: [ "ftp://nowhere" ]\n');
    await eventually(
      async () => {
        const view = await fleetView(agent, A);
        return (
          view.instances.length === 3 &&
          view.instances.every((i) => !i.config.ok && i.config.revision === before && (i.config.errors ?? []).some((e) => e.startsWith(`etcd:${PREFIX}/config:3:`)))
        );
      },
      WAIT,
      'every instance reports the refused config with its position in etcd',
    );
    for (const m of members) assert.equal((await body(agent, `${m.url}/`)).status, 200, `${m.name} still serves`);
    await push(cluster, dir, sharedConfig([b1.url, b2.url]));
    await eventually(
      async () => (await fleetView(agent, A)).instances.every((i) => i.config.ok && (i.config.revision ?? 0) > before),
      WAIT,
      'every instance takes the fixed config',
    );
  });

  await t.test('the etcd leader killed under load: changes still propagate, no request fails', async () => {
    const load = loadUntilStopped(agent, members);
    const leader = await cluster.leader();
    await leader.stop('SIGKILL');
    let added: { status: number; json: Record<string, unknown> } | undefined;
    // The write may meet the election (503, etcd unavailable): an operator retries.
    await eventually(
      async () => {
        added = await call(agent, 'POST', `${C.admin}/api/v1/services/web/servers`, { url: b3.url });
        assert.ok(added.status === 201 || added.status === 503, JSON.stringify(added.json));
        return added.status === 201;
      },
      WAIT,
      'the change is accepted once a new leader is elected',
      200,
    );
    for (const m of members) await eventually(async () => (await serverIds(agent, m)).includes(new URL(b3.url).host), WAIT, `${m.name} runs b3`);
    const { sent, failed } = await load.stop();
    t.diagnostic(`leader ${leader.name} killed: ${sent} requests, ${failed.length} failed`);
    assert.deepEqual(failed.slice(0, 5), []);
    await leader.start();
    await cluster.healthy();
  });

  await t.test('C cut off from etcd: it keeps serving and says so; changes made meanwhile reach it when it is back, without replaying the ones in between', async () => {
    linkC.cut();
    await eventually(async () => !(await fleetView(agent, C)).etcd.reachable, WAIT, 'C reports etcd unreachable');
    await eventually(async () => !(await fleetView(agent, A)).instances.some((i) => i.id === 'C'), WAIT, 'C leaves the fleet list when its lease expires');
    const x = { url: 'http://127.0.0.1:20901', name: 'x' };
    const y = { url: 'http://127.0.0.1:20902', name: 'y' };
    assert.equal((await call(agent, 'POST', `${A.admin}/api/v1/services/web/servers`, x)).status, 201);
    assert.equal((await call(agent, 'DELETE', `${B.admin}/api/v1/services/web/servers/x`)).status, 202);
    assert.equal((await call(agent, 'POST', `${A.admin}/api/v1/services/web/servers`, y)).status, 201);
    const current = (await fleetView(agent, A)).revision;
    assert.ok(!(await serverIds(agent, C)).includes('y'), 'C has not seen the change');
    assert.equal((await body(agent, `${C.url}/`)).status, 200, 'C still serves');
    const reloads = () => C.logs.filter((l) => l.includes('"config reloaded"')).length;
    const before = reloads();
    linkC.restore();
    await eventually(
      async () => {
        const view = await fleetView(agent, C);
        return view.etcd.reachable && view.revision === current && view.instances.some((i) => i.id === 'C');
      },
      WAIT,
      'C is back at the current revision',
    );
    assert.ok((await serverIds(agent, C)).includes('y'));
    assert.ok(!(await serverIds(agent, C)).includes('x'));
    assert.equal(reloads() - before, 1, 'C applied the current config once, not each change it missed');
    assert.ok(C.logs.some((l) => l.includes('etcd reachable again')));
    await eventually(async () => (await fleetView(agent, A)).instances.length === 3, WAIT, 'C is listed again');
    assert.equal((await call(agent, 'DELETE', `${B.admin}/api/v1/services/web/servers/y`)).status, 202);
  });

  await t.test('all of etcd stopped: every instance keeps serving, says so, and catches up after restart', async () => {
    const load = loadUntilStopped(agent, members);
    await Promise.all(cluster.members.map((m) => m.stop('SIGKILL')));
    for (const m of members) {
      await eventually(async () => !(await fleetView(agent, m)).etcd.reachable, WAIT, `${m.name} reports etcd unreachable`);
      const metrics = await body(agent, `${m.admin}/metrics`);
      assert.match(metrics.text, /^velocity_fleet_etcd_up 0$/m);
      assert.ok(
        m.logs.some((l) => l.includes('etcd unreachable')),
        `${m.name} logs the outage`,
      );
    }
    await Promise.all(cluster.members.map((m) => m.start()));
    await cluster.healthy();
    // Written before the instances are back: they must pick it up when they resync.
    await push(cluster, dir, sharedConfig([b1.url]));
    const wanted = Number((await cluster.client.get(`${PREFIX}/config`).exec()).kvs[0]?.mod_revision);
    await eventually(
      async () => (await Promise.all(members.map((m) => fleetView(agent, m)))).every((v) => v.etcd.reachable && v.revision === wanted && v.instances.length === 3),
      WAIT,
      'every instance is back, at the current revision, registered again',
    );
    for (const m of members) assert.deepEqual(await serverIds(agent, m), [new URL(b1.url).host]);
    const { sent, failed } = await load.stop();
    t.diagnostic(`all etcd down: ${sent} requests, ${failed.length} failed`);
    assert.deepEqual(failed.slice(0, 5), []);
  });
});

test('with etcd authentication, push and instances use a user limited to the fleet prefix', { timeout: 300_000 }, async (t) => {
  const cluster = await startEtcdCluster(t, 1);
  if (!cluster) return;
  const etcdctl = (...args: string[]) => runCommand('etcdctl', [`--endpoints=${cluster.endpoints.join(',')}`, ...args], { env: { ETCDCTL_API: '3' }, timeoutMs: 60_000 });
  for (const args of [
    ['user', 'add', 'root:root-password', '--interactive=false'],
    ['user', 'grant-role', 'root', 'root'],
    ['user', 'add', 'velocity:fleet-password', '--interactive=false'],
    ['role', 'add', 'fleet'],
    ['role', 'grant-permission', 'fleet', '--prefix=true', 'readwrite', `${PREFIX}/`],
    ['user', 'grant-role', 'velocity', 'fleet'],
    ['auth', 'enable'],
  ]) {
    const r = await etcdctl(...args);
    assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'velocity-fleet-auth-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const b1 = await backend(t, 'b1');
  writeFileSync(join(dir, 'shared.yaml'), sharedConfig([b1.url]));
  const pushArgs = [CLI, 'config', 'push', join(dir, 'shared.yaml'), '--etcd', cluster.endpoints.join(','), '--prefix', PREFIX];
  const refused = await etcdctl('get', `${PREFIX}/config`);
  assert.notEqual(refused.code, 0, 'etcd refuses a client without a user');
  const pushed = await runCommand(process.execPath, [...pushArgs, '--user', 'velocity'], { env: { ETCD_PASSWORD: 'fleet-password' }, timeoutMs: 60_000 });
  assert.equal(pushed.code, 0, pushed.stderr);

  const file = join(dir, 'local.yaml');
  writeFileSync(
    file,
    `listen: 127.0.0.1:0
admin: { listen: 127.0.0.1:0, token: ${TOKEN} }
config_source:
  etcd: { endpoints: [${cluster.endpoints.join(', ')}], prefix: ${PREFIX}, auth: { username: velocity, password: "\${FLEET_ETCD_PASSWORD}" } }
`,
  );
  process.env.FLEET_ETCD_PASSWORD = 'fleet-password';
  t.after(() => delete process.env.FLEET_ETCD_PASSWORD);
  const internal: string[] = [];
  const velocity = await start(file, { logger: watchLogger(pino({ level: 'silent' }), internal) });
  t.after(async () => {
    await velocity.close();
    assertNoInternalErrors(internal, 'the instance');
  });
  const agent = new Agent({ keepAliveTimeout: 1_000 });
  t.after(() => agent.close());
  const member: Member = { name: 'A', logs: [], velocity, admin: `http://127.0.0.1:${velocity.adminAddress?.port}`, url: `http://127.0.0.1:${velocity.address.port}` };
  await eventually(async () => (await fleetView(agent, member)).etcd.reachable, WAIT, 'the instance reaches etcd as its user');
  assert.equal((await body(agent, `${member.url}/`)).text, 'b1');
  const b2 = await backend(t, 'b2');
  assert.equal((await call(agent, 'POST', `${member.admin}/api/v1/services/web/servers`, { url: b2.url })).status, 201);
  const pulled = await runCommand(process.execPath, [CLI, 'config', 'pull', '--etcd', cluster.endpoints.join(','), '--prefix', PREFIX, '--user', 'velocity:fleet-password'], {
    timeoutMs: 60_000,
  });
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.ok(pulled.stdout.includes(b2.url), 'the API change is in etcd');
});
