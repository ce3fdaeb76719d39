/** Docker discovery against a real private engine: start, stop, resync after the engine restarts. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildBusyboxImage, createInternalNetwork, runContainer, startDockerd } from '../support/docker.ts';
import { eventually, get, startInProcess, testAgent } from '../support/velocity.ts';

describe('docker provider', () => {
  test('discovers labelled containers at start, adds started ones, drains stopped ones, resyncs after an engine restart', async (t) => {
    const d = await startDockerd(t);
    if (!d) return;
    await buildBusyboxImage(d, 'localhost/velocity-web:test');
    await createInternalNetwork(d, 'vlab', '10.202.11.0/24');
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
    console.log(`docker follow times: add ${addMs} ms, drain+remove ${removeMs} ms`);
  });
});
