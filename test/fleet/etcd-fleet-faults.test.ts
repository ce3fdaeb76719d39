/**
 * A fleet under faults the happy path never meets: entries in etcd that Velocity did not
 * write, malformed member records, an instance cut off from etcd while the others change
 * server states, and a reconnect that races a second outage. One real etcd, two instances:
 * A reaches etcd directly, B through forwarders the test can cut.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Agent } from 'undici';
import { EtcdConfigStore } from '../../src/config/etcd-source.ts';
import { configSourceSchema } from '../../src/config/schema/fleet.ts';
import { startEtcdCluster } from '../support/etcd.ts';
import { backend, bareMember, body, call, etcdLink, fleetView, type Member, servers, sharedConfig, startMember } from '../support/fleet.ts';
import { assertNoInternalErrors } from '../support/internal-errors.ts';
import { runCommand } from '../support/spawn.ts';
import { delay, eventually } from '../support/velocity.ts';

const PREFIX = '/velocity/faults';
const WAIT = 60_000;

test('a fleet keeps serving and following changes through bad entries, outages and reconnects', { timeout: 600_000 }, async (t) => {
  const cluster = await startEtcdCluster(t, 1);
  if (!cluster) return;
  const dir = mkdtempSync(join(tmpdir(), 'velocity-fleet-faults-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const agent = new Agent({ keepAliveTimeout: 1_000, connections: 16 });
  t.after(() => agent.close());
  const etcdctl = async (...args: string[]) => {
    const r = await runCommand('etcdctl', [`--endpoints=${cluster.endpoints.join(',')}`, ...args], { env: { ETCDCTL_API: '3' }, timeoutMs: 60_000 });
    assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
  };
  const b1 = await backend(t, 'b1');
  const b2 = await backend(t, 'b2');
  const [id1, id2] = [new URL(b1.url).host, new URL(b2.url).host];
  await cluster.client.put(`${PREFIX}/config`).value(sharedConfig([b1.url, b2.url]));

  const internal: string[] = [];
  const linkB = await etcdLink(t, cluster.endpoints);
  const A = await startMember(t, dir, 'A', { endpoints: cluster.endpoints, prefix: PREFIX }, internal);
  const B = await startMember(t, dir, 'B', { endpoints: linkB.endpoints, prefix: PREFIX }, internal, 'info');
  t.after(() => assertNoInternalErrors(internal, 'the fleet'));
  const members = [A, B];
  await eventually(
    async () => (await Promise.all(members.map((m) => fleetView(agent, m)))).every((v) => v.etcd.reachable && v.instances.length === 2),
    WAIT,
    'both instances see each other',
  );
  const stateOf = async (m: Member, id: string) => (await servers(agent, m)).find((s) => s.id === id)?.state;
  const setState = (m: Member, id: string, state: string) => call(agent, 'PATCH', `${m.admin}/api/v1/services/web/servers/${id}`, { state });
  const reachable = async (m: Member) => (await fleetView(agent, m)).etcd.reachable;
  const configKey = `${PREFIX}/config`;
  const configRevision = async () => Number((await cluster.client.get(configKey).exec()).kvs[0]?.mod_revision);
  /** Writes the shared config and waits until both instances run it. */
  const share = async (text: string) => {
    await cluster.client.put(configKey).value(text);
    const revision = await configRevision();
    await eventually(
      async () => (await fleetView(agent, A)).instances.every((i) => i.config.ok && i.config.revision === revision),
      WAIT,
      `both instances run revision ${revision}`,
    );
  };
  /** B loses etcd, says so, and is given it back. */
  const outage = async (during: () => Promise<void> = async () => undefined) => {
    linkB.cut();
    await eventually(async () => !(await reachable(B)), WAIT, 'B reports etcd unreachable');
    await during();
    linkB.restore();
    await eventually(() => reachable(B), WAIT, 'B reaches etcd again');
  };

  await t.test('keys and values Velocity did not write are logged and ignored: every instance keeps serving and following changes', async () => {
    const bad: [string, string][] = [
      [`${PREFIX}/server-state/%ZZ/x`, 'draining'],
      [`${PREFIX}/server-state/web`, 'draining'],
      [`${PREFIX}/server-state/web/${id1}`, 'sideways'],
      [`${PREFIX}/blocklist/%ZZ`, JSON.stringify({ cidr: '127.0.0.1', reason: 'bad key', expiresAt: null })],
      [`${PREFIX}/blocklist/127.0.0.1`, 'null'],
      [`${PREFIX}/blocklist/127.0.0.2`, '{"cidr":"127.0.0.2"}'],
      [`${PREFIX}/blocklist/127.0.0.3`, 'not json'],
    ];
    for (const [key, value] of bad) await etcdctl('put', key, value);
    await etcdctl('del', `${PREFIX}/server-state/%ZZ/x`);
    // Good changes made after the bad ones still reach every instance.
    assert.equal((await setState(A, id2, 'draining')).status, 200);
    for (const m of members) await eventually(async () => (await stateOf(m, id2)) === 'draining', WAIT, `${m.name} drains b2`);
    for (const m of members) {
      assert.equal(await stateOf(m, id1), 'enabled', `${m.name} ignores a state it does not know`);
      assert.equal((await body(agent, `${m.url}/`)).status, 200, `${m.name} serves, blocking nobody on a malformed entry`);
      for (const [key] of bad)
        assert.ok(
          m.logs.some((l) => l.includes('not what Velocity writes') && l.includes(JSON.stringify(key))),
          `${m.name} names ${key} in a warning`,
        );
    }
    // Joining again with the bad entries in place: B reads them at its resync and is reachable again.
    await outage();
    assert.equal((await setState(A, id2, 'enabled')).status, 200);
    for (const m of members) await eventually(async () => (await stateOf(m, id2)) === 'enabled', WAIT, `${m.name} enables b2 again`);
    await etcdctl('del', `${PREFIX}/server-state/`, '--prefix');
    await etcdctl('del', `${PREFIX}/blocklist/`, '--prefix');
  });

  await t.test('malformed member records are left out of the fleet list; the instance does not take them for etcd being down', async () => {
    const outages = async () => Number(/^velocity_fleet_etcd_outages_total (\d+)$/m.exec((await body(agent, `${A.admin}/metrics`)).text)?.[1]);
    const before = await outages();
    const bad = [`${PREFIX}/instances/null`, `${PREFIX}/instances/half`, `${PREFIX}/instances/not-json`];
    await etcdctl('put', bad[0] as string, 'null');
    await etcdctl('put', bad[1] as string, '{"id":"half"}');
    await etcdctl('put', bad[2] as string, '{"id":');
    for (let i = 0; i < 3; i++) {
      const view = await fleetView(agent, A);
      assert.equal(view.listing, 'current');
      assert.ok(view.etcd.reachable, JSON.stringify(view.etcd));
      assert.deepEqual(view.instances.map((m) => m.id).sort(), ['A', 'B']);
    }
    assert.equal(await outages(), before, 'no outage counted');
    for (const key of bad) assert.equal(A.logs.filter((l) => l.includes('not what Velocity writes') && l.includes(JSON.stringify(key))).length, 1, `A warns once about ${key}`);
    // A change made now still reaches A: its watch was never cancelled.
    assert.equal((await setState(B, id1, 'disabled')).status, 200);
    await eventually(async () => (await stateOf(A, id1)) === 'disabled', WAIT, 'A disables b1');
    assert.equal((await setState(B, id1, 'enabled')).status, 200);
    await eventually(async () => (await stateOf(A, id1)) === 'enabled', WAIT, 'A enables b1 again');
    for (const key of bad) await etcdctl('del', key);
  });

  await t.test('a server re-enabled while B was cut off from etcd is enabled on B when it is back', async () => {
    assert.equal((await setState(A, id1, 'draining')).status, 200);
    for (const m of members) await eventually(async () => (await stateOf(m, id1)) === 'draining', WAIT, `${m.name} drains b1`);
    await outage(async () => {
      assert.equal((await setState(A, id1, 'enabled')).status, 200);
      assert.equal(await stateOf(B, id1), 'draining', 'B has not seen the change');
    });
    await eventually(async () => (await stateOf(B, id1)) === 'enabled', WAIT, 'B enables b1 when back');
  });

  await t.test('a state change B cannot write to etcd answers 503 and changes nothing, on B or elsewhere', async () => {
    await outage(async () => {
      const refused = await setState(B, id2, 'draining');
      assert.equal(refused.status, 503, JSON.stringify(refused.json));
      assert.equal(await stateOf(B, id2), 'enabled', 'B did not drain b2 on its own');
    });
    for (const m of members) assert.equal(await stateOf(m, id2), 'enabled', `${m.name} runs b2 enabled`);
    assert.equal((await setState(B, id2, 'disabled')).status, 200, 'the change made once etcd is back');
    for (const m of members) await eventually(async () => (await stateOf(m, id2)) === 'disabled', WAIT, `${m.name} disables b2`);
    assert.equal((await setState(A, id2, 'enabled')).status, 200);
    for (const m of members) await eventually(async () => (await stateOf(m, id2)) === 'enabled', WAIT, `${m.name} enables b2 again`);
    const unknown = await setState(A, '127.0.0.1:1', 'draining');
    assert.equal(unknown.status, 404, JSON.stringify(unknown.json));
    assert.equal((await cluster.client.getAll().prefix(`${PREFIX}/server-state/`).keys()).length, 0, 'a state for a server nobody runs is not written');
  });

  await t.test('an edit of a shared config with YAML errors answers 409 with the error; one that would leave it invalid answers 422 and writes nothing', async () => {
    await cluster.client.put(configKey).value('services:\n  - name: web\n    servers: [ "http://127.0.0.1:1"\n');
    const broken = await call(agent, 'PATCH', `${A.admin}/api/v1/services/web/servers/${id1}`, { weight: 3 });
    assert.equal(broken.status, 409, JSON.stringify(broken.json));
    assert.match(String(broken.json.error), new RegExp(`not valid YAML \\(etcd:${PREFIX}/config:\\d+:\\d+: `));
    await cluster.client.put(configKey).value('services:\n  - name: web\n    servers: [ "ftp://nowhere" ]\n');
    const before = await configRevision();
    const invalid = await call(agent, 'POST', `${A.admin}/api/v1/services/web/servers`, { url: 'http://127.0.0.1:20903' });
    assert.equal(invalid.status, 422, JSON.stringify(invalid.json));
    assert.match(String(invalid.json.error), new RegExp(`would make the shared config invalid.*etcd:${PREFIX}/config:3:`));
    assert.equal(await configRevision(), before, 'nothing was written');
    await share(sharedConfig([b1.url, b2.url]));
  });

  await t.test('a change this instance then refuses to load answers at once with the reload’s errors', async () => {
    // A policy module (loaded by the reload, not by the API's schema check) that refuses while a file exists.
    writeFileSync(
      join(dir, 'refusing-policy.mjs'),
      `import { existsSync } from 'node:fs';
export default () => {
  if (existsSync(new URL('./refuse', import.meta.url))) throw new Error('told to refuse');
  return { pick: (servers, _request, usable) => servers.find((s) => usable(s)) };
};
`,
    );
    const custom = `  - name: custom\n    hosts: [custom.test]\n    policy: { module: ./refusing-policy.mjs }\n    servers: [${b1.url}]\n`;
    await share(sharedConfig([b1.url, b2.url], custom));
    writeFileSync(join(dir, 'refuse'), '');
    const refused = await call(agent, 'POST', `${A.admin}/api/v1/services/web/servers`, { url: 'http://127.0.0.1:20904' });
    assert.equal(refused.status, 409, JSON.stringify(refused.json));
    assert.match(String(refused.json.error), /refused the resulting config: .*told to refuse/);
    rmSync(join(dir, 'refuse'));
    await share(sharedConfig([b1.url, b2.url]));
  });

  await t.test('etcd lost again while a reconnect waits for its reload: the member reconnects and follows changes, never reports reachable without a watch', async () => {
    // The member alone, with a reload the test holds: the seam is the instance's reload, etcd is real.
    const prefix = '/velocity/race';
    const link = await etcdLink(t, cluster.endpoints);
    const source = configSourceSchema.parse({ etcd: { endpoints: link.endpoints, prefix, id: 'R', lease_ttl: '3s', report_interval: '1s' } }).etcd;
    assert.ok(source);
    const store = new EtcdConfigStore(source, dir);
    t.after(() => store.close());
    let reloads = 0;
    let held: Promise<void> | undefined;
    let release: () => void = () => undefined;
    const applied: string[] = [];
    const member = bareMember(store, source, internal, {
      reload: async () => {
        reloads++;
        await held;
        return { ok: true, at: new Date().toISOString() };
      },
      setServerState: (service, server, state) => applied.push(`${service}/${server} ${state}`),
    });
    t.after(() => member.close());
    member.start();
    await eventually(() => member.etcd.reachable, WAIT, 'the member reaches etcd');

    held = new Promise<void>((r) => {
      release = r;
    });
    const before = reloads;
    link.cut();
    await eventually(() => !member.etcd.reachable, WAIT, 'the member reports etcd unreachable');
    link.restore();
    await eventually(() => reloads > before, WAIT, 'the reconnect is waiting for its reload');
    const attempts = member.etcd.attempts;
    link.cut();
    await eventually(() => member.etcd.attempts > attempts, WAIT, 'the new watch is lost too');
    link.restore();
    // Let the retry that loss scheduled come due while the reload still holds the reconnect
    // (its backoff is at most 10 s): that retry must not be swallowed by the attempt in progress.
    await delay(12_000);
    release();
    await eventually(() => member.etcd.reachable, WAIT, 'the member reaches etcd again');
    await cluster.client.put(`${prefix}/server-state/web/s1`).value('draining');
    await eventually(() => applied.includes('web/s1 draining'), WAIT, 'the member follows a change made after it reconnected');
  });
});
