/**
 * An instance whose path to etcd hangs (a blackhole: bytes stop, nothing is reset) notices
 * it, keeps serving, says so, follows the fleet again once the path flows, and still shuts
 * down while the path is hung. One real etcd; A reaches it directly, B through forwarders
 * the test can hang.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Agent } from 'undici';
import { EtcdConfigStore } from '../../src/config/etcd-source.ts';
import { configSourceSchema } from '../../src/config/schema/fleet.ts';
import { startEtcdCluster } from '../support/etcd.ts';
import { backend, bareMember, body, call, etcdLink, fleetView, serverIds, sharedConfig, startMember } from '../support/fleet.ts';
import { assertNoInternalErrors } from '../support/internal-errors.ts';
import { eventually } from '../support/velocity.ts';

const PREFIX = '/velocity/hung';
const WAIT = 60_000;

test('a hung path to etcd: the instance notices, keeps serving, catches up when it flows again, and shuts down while hung', { timeout: 180_000 }, async (t) => {
  const cluster = await startEtcdCluster(t, 1);
  if (!cluster) return;
  const dir = mkdtempSync(join(tmpdir(), 'velocity-fleet-hung-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const agent = new Agent({ keepAliveTimeout: 1_000, connections: 16, headersTimeout: WAIT, bodyTimeout: WAIT });
  t.after(() => agent.close());
  const b1 = await backend(t, 'b1');
  await cluster.client.put(`${PREFIX}/config`).value(sharedConfig([b1.url]));

  const internal: string[] = [];
  const linkB = await etcdLink(t, cluster.endpoints);
  const A = await startMember(t, dir, 'A', { endpoints: cluster.endpoints, prefix: PREFIX }, internal);
  const B = await startMember(t, dir, 'B', { endpoints: linkB.endpoints, prefix: PREFIX }, internal, 'info');
  t.after(() => assertNoInternalErrors(internal, 'the fleet'));
  const started = Date.now();
  const mark = (what: string) => t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: ${what}`);
  await eventually(async () => (await Promise.all([A, B].map((m) => fleetView(agent, m)))).every((v) => v.etcd.reachable && v.instances.length === 2), WAIT, 'both see each other');
  mark('both see each other');

  linkB.hang();
  await eventually(async () => !(await fleetView(agent, B)).etcd.reachable, WAIT, 'B reports etcd unreachable');
  mark(`B unreachable: ${(await fleetView(agent, B)).etcd.error}`);
  await eventually(async () => !(await fleetView(agent, A)).instances.some((i) => i.id === 'B'), WAIT, 'B leaves the fleet list when its lease expires');
  mark('B left the list');
  const y = { url: 'http://127.0.0.1:20902', name: 'y' };
  assert.equal((await call(agent, 'POST', `${A.admin}/api/v1/services/web/servers`, y)).status, 201);
  const current = (await fleetView(agent, A)).revision;
  assert.ok(!(await serverIds(agent, B)).includes('y'), 'B has not seen the change');
  assert.equal((await body(agent, `${B.url}/`)).status, 200, 'B still serves');
  mark('change made through A');

  linkB.restore();
  await eventually(
    async () => {
      const view = await fleetView(agent, B);
      return view.etcd.reachable && view.revision === current && view.instances.some((i) => i.id === 'B');
    },
    WAIT,
    'B is back at the current revision',
  );
  mark('B back');
  assert.ok((await serverIds(agent, B)).includes('y'));
  await eventually(async () => (await fleetView(agent, A)).instances.length === 2, WAIT, 'B is listed again');
  mark('B listed again');

  linkB.hang();
  await eventually(async () => !(await fleetView(agent, B)).etcd.reachable, WAIT, 'B reports etcd unreachable again');
  mark('B unreachable again');
  await B.velocity.close();
  mark('B closed while hung');
});

/** Timers keeping this process alive now (unref'd ones do not count). */
const liveTimers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

test('a hung path is noticed through the membership lease within its TTL, and a closed member leaves no timer behind', { timeout: 180_000 }, async (t) => {
  const cluster = await startEtcdCluster(t, 1);
  if (!cluster) return;
  const link = await etcdLink(t, cluster.endpoints);
  // Reports every 10 minutes: only the lease's keepalive talks to etcd in this test.
  const source = configSourceSchema.parse({ etcd: { endpoints: link.endpoints, prefix: '/velocity/hung-lease', id: 'L', lease_ttl: '3s', report_interval: '10m' } }).etcd;
  assert.ok(source);
  const store = new EtcdConfigStore(source, tmpdir());
  const internal: string[] = [];
  const member = bareMember(store, source, internal);
  t.after(() => assertNoInternalErrors(internal, 'the member'));
  const before = liveTimers();
  member.start();
  try {
    await eventually(() => member.etcd.reachable, WAIT, 'the member reaches etcd');
    link.hang();
    await eventually(() => !member.etcd.reachable, WAIT, 'the member reports etcd unreachable');
    // Not the lease given up for lost (etcd3 does that after twice the TTL without an answer): the first keepalive left unanswered.
    assert.match(String(member.etcd.error), /no answer to the membership lease keepalive/);
    link.restore();
    await eventually(() => member.etcd.reachable, WAIT, 'the member reaches etcd again');
  } finally {
    await member.close();
    store.close();
  }
  // An embedder's process exits once it closed what it started: no keepalive timer of a lost lease keeps running.
  await eventually(() => liveTimers() <= before, WAIT, `no more timers than before the member started (${before}); now ${liveTimers()}`);
});
