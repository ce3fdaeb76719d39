/** Servers on other hosts (network namespaces): a host that vanishes is found by timeouts and failed over. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createHosts } from '../support/netns.ts';
import { BACKEND, eventually, get, load, startInProcess, testAgent, watchOutput } from '../support/velocity.ts';

describe('servers on other hosts', () => {
  test('a host whose link goes down is ejected by timeouts with no client errors, and returns when the link is back', async (t) => {
    const hosts = await createHosts(t, 2);
    if (!hosts) return;
    for (const [i, host] of hosts.entries()) {
      const child = host.run(process.execPath, [BACKEND, '--host', host.ip, '--port', '8080', '--name', `remote-${i + 1}`]);
      t.after(() => child.kill('SIGKILL'));
      await watchOutput(child).waitFor(/listening on/);
    }
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: remote
    servers: [http://${hosts[0]?.ip}:8080, http://${hosts[1]?.ip}:8080]
    health: { type: http, interval: 300ms, timeout: 250ms, unhealthy_threshold: 2, healthy_threshold: 2 }
    timeouts: { connect: 300ms, response_header: 2s }
    retries: { attempts: 3, backoff: { base: 10ms, max: 50ms } }
    passive_health: { base_ejection: 1s }
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(String((await get(agent, url)).headers['x-backend']));
    assert.deepEqual([...seen].sort(), ['remote-1', 'remote-2']);

    const victim = hosts[1];
    assert.ok(victim);
    let markedDownAt = 0;
    velocity.controlPlane.on('health', (change) => {
      if (!change.up && change.server.startsWith(victim.ip)) markedDownAt = Date.now();
    });
    await victim.linkDown();
    const downAt = Date.now();
    const statuses = await load(200, 4, async () => (await get(agent, url)).status);
    assert.deepEqual([...new Set(statuses)], [200], 'no client errors while the host vanished');
    const server = () => velocity.dataPlane.service('remote')?.servers.find((s) => s.url.includes(victim.ip));
    await eventually(() => server()?.activeUp === false, 3_000, 'the vanished host is marked down by timed-out checks');
    const ejectMs = markedDownAt - downAt;

    await victim.linkUp();
    const upAt = Date.now();
    await eventually(() => server()?.activeUp === true, 5_000, 'the host returns after its link is back');
    const recoverMs = Date.now() - upAt;
    // Passive health may still hold it out for its (1 s) ejection; then it takes traffic again.
    await eventually(async () => (await get(agent, url)).headers['x-backend'] === 'remote-2', 5_000, 'remote-2 serves again');
    console.log(`remote host: marked down ${ejectMs} ms after link down (load took ${Date.now() - downAt} ms), back ${recoverMs} ms after link up`);
  });
});
