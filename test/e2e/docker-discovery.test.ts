/** Docker discovery against a real private engine: start, stop, resync after the engine restarts. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { captureLog } from '../proxy/log-capture.ts';
import { buildBusyboxImage, createInternalNetwork, runContainer, startDockerd, startPodman } from '../support/docker.ts';
import { eventually, get, load, startInProcess, testAgent } from '../support/velocity.ts';

describe('docker provider', () => {
  for (const [engine, startEngine, subnet] of [
    ['Docker', startDockerd, '10.202.11.0/24'],
    ['Podman', startPodman, '10.202.21.0/24'],
  ] as const) {
    test(`discovers labelled containers at start, adds started ones, drains stopped ones, resyncs after an engine restart (${engine})`, async (t) => {
      const d = await startEngine(t);
      if (!d) return;
      await buildBusyboxImage(d, 'localhost/velocity-web:test');
      await createInternalNetwork(d, 'vlab', subnet);
      const labels = (extra: Record<string, string> = {}) => ({ 'velocity.service': 'web', 'velocity.port': '8080', ...extra });
      await runContainer(d, { name: 'web-a', image: 'localhost/velocity-web:test', network: 'vlab', labels: labels() });
      await runContainer(d, { name: 'web-bad', image: 'localhost/velocity-web:test', network: 'vlab', labels: labels({ 'velocity.port': 'http' }) });

      const velocity = await startInProcess(
        t,
        `listen: "127.0.0.1:0"
admin: { enabled: false }
docker:
  host: ${d.host}
  network: vlab
  reconnect_backoff: { base: 200ms, max: 1s }
services:
  - name: web
    health: { type: http, path: /health, interval: 300ms, timeout: 300ms, unhealthy_threshold: 2 }
`,
      );
      const names = () =>
        velocity.controlPlane
          .servers('web')
          .filter((s) => s.removeBy === undefined)
          .map((s) => s.spec.id)
          .sort();
      await eventually(() => names().join() === 'web-a', 10_000, 'web-a discovered at start (web-bad skipped)');
      const agent = testAgent(t);
      const url = `http://127.0.0.1:${velocity.address.port}/`;
      await eventually(
        async () => {
          const r = await get(agent, url);
          return r.body === 'hello from a container\n';
        },
        5_000,
        'requests reach the container',
      );

      // A container that starts is added.
      const started = Date.now();
      await runContainer(d, { name: 'web-b', image: 'localhost/velocity-web:test', network: 'vlab', labels: labels() });
      await eventually(() => names().join() === 'web-a,web-b', 5_000, 'web-b added');
      const addMs = Date.now() - started;

      // A container that stops is drained and removed.
      const stopping = Date.now();
      await d.docker(['stop', '-t', '0', 'web-a']);
      await eventually(() => names().join() === 'web-b', 5_000, 'web-a removed');
      const removeMs = Date.now() - stopping;
      for (let i = 0; i < 5; i++) assert.equal((await get(agent, url)).status, 200);

      // The engine restarts; meanwhile a container changes; Velocity resyncs the full list.
      await d.stop();
      await d.start();
      await d.docker(['rm', '-f', 'web-a']);
      await d.docker(['start', 'web-b']).catch(() => undefined);
      await runContainer(d, { name: 'web-c', image: 'localhost/velocity-web:test', network: 'vlab', labels: labels() });
      await eventually(() => names().includes('web-c'), 15_000, 'web-c found after the engine came back');
      console.log(`${engine} follow times: add ${addMs} ms, drain+remove ${removeMs} ms`);
    });
  }

  test('a missing engine socket is a warning and a retry, never a crash', async (t) => {
    const log = captureLog('info');
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
docker: { host: "unix:///nonexistent/docker.sock", reconnect_backoff: { base: 100ms, max: 200ms } }
services:
  - name: web
`,
      { logger: log.logger },
    );
    await eventually(() => log.find(/container engine unreachable/).length > 0, 3_000, 'the warning is logged');
    assert.match(String(log.find(/container engine unreachable/)[0]?.err), /socket not found/);
    const r = await get(testAgent(t), `http://127.0.0.1:${velocity.address.port}/`);
    assert.equal(r.status, 503, 'the service has no servers yet; Velocity serves on');
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(log.find(/container engine unreachable/).length, 1, 'logged once while it keeps retrying');
  });

  test('the autoscaler starts containers from a template under load and drains and removes them after', async (t) => {
    const d = await startDockerd(t);
    if (!d) return;
    await buildBusyboxImage(d, 'localhost/velocity-scale:test');
    await createInternalNetwork(d, 'vscale', '10.202.12.0/24');
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
docker: { host: ${d.host}, network: vscale }
services:
  - name: web
    policy: least-connections
    autoscale:
      min: 1
      max: 3
      target: { rps_per_server: 20 }
      interval: 300ms
      scale_up_cooldown: 300ms
      scale_down_cooldown: 1s
      stabilization_window: 1s
      container: { image: "localhost/velocity-scale:test", port: 8080, network: vscale }
`,
    );
    const live = () => velocity.controlPlane.servers('web').filter((s) => s.removeBy === undefined).length;
    const managed = async () => (await d.docker(['ps', '-q', '--filter', 'label=velocity.managed=true'])).split('\n').filter(Boolean).length;
    await eventually(() => live() === 1, 20_000, 'min 1 container started and discovered');
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const failures: number[] = [];
    let peak = 1;
    const until = Date.now() + 12_000;
    await load(3_000, 4, async () => {
      if (Date.now() > until || peak >= 3) return;
      const r = await get(agent, url);
      if (r.status !== 200) failures.push(r.status);
      peak = Math.max(peak, live());
    });
    assert.equal(peak, 3, 'scaled up to max under load');
    assert.equal(await managed(), 3);
    await eventually(async () => live() === 1 && (await managed()) === 1, 30_000, 'scaled back down: drained, stopped and removed');
    assert.deepEqual(failures, []);
  });
});
