/** Servers die and hang under steady load: idempotent clients see no errors. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isAvailable } from '../../src/upstream/availability.ts';
import { delay, eventually, get, load, startApp, startBackends, testAgent } from '../support/velocity.ts';

describe('failover under load', () => {
  test('kill -9 of one backend and SIGSTOP of another cost zero failed GETs out of 2,000 (concurrency 20)', async (t) => {
    const backends = await startBackends(t, 3);
    const velocity = await startApp(
      t,
      `servers: [${backends.map((b) => b.url).join(', ')}]
health: { type: http, interval: 250ms, timeout: 250ms, unhealthy_threshold: 2, healthy_threshold: 2 }
timeouts: { connect: 250ms, response_header: 600ms }
retries: { attempts: 3, budget: 1, backoff: { base: 5ms, max: 20ms } }
passive_health: { consecutive_failures: 2, base_ejection: 5s }
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const service = () => velocity.dataPlane.service('app');
    const serverOf = (port: number) => service()?.servers.find((s) => s.port === port);
    const [killed, stopped] = [backends[0], backends[1]];
    assert.ok(killed && stopped);

    const failures: string[] = [];
    let sent = 0;
    let requestsAtCont = 0;
    let requestsAfterDetect = 0;
    let detectMs = 0;
    const chaos = (async () => {
      await delay(400);
      await killed.stop('SIGKILL');
      await delay(400);
      const stoppedAt = Date.now();
      stopped.child.kill('SIGSTOP');
      await eventually(() => !isAvailable(serverOf(stopped.port) as never, Date.now()), 5_000, 'the stopped backend is taken out');
      detectMs = Date.now() - stoppedAt;
      // Attempts already sent to it end at the response timeout; from then on it gets none.
      await delay(800);
      requestsAfterDetect = serverOf(stopped.port)?.requests ?? -1;
      await delay(1_500);
      requestsAtCont = serverOf(stopped.port)?.requests ?? -1;
      stopped.child.kill('SIGCONT');
    })();
    const deadline = Date.now() + 60_000;
    await load(2_000, 20, async () => {
      if (Date.now() > deadline) return;
      sent++;
      const r = await get(agent, url);
      if (r.status !== 200) failures.push(`${r.status} ${r.headers['x-velocity-error']}`);
    });
    await chaos;
    assert.equal(sent, 2_000);
    assert.deepEqual(failures, [], 'no client saw an error');
    assert.equal(requestsAtCont, requestsAfterDetect, 'the stopped backend got no requests while stopped, after detection');
    const recoverMs = await eventually(() => serverOf(stopped.port)?.activeUp === true, 5_000, 'the continued backend comes back');
    console.log(`failover: 2000 GETs, ${failures.length} failed; SIGSTOP detected in ${detectMs} ms; back ${recoverMs} ms after the end of the load`);
  });
});
