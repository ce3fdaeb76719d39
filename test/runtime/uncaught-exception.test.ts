/**
 * An uncaught exception leaves a thread in a state Node calls unsafe to resume. A
 * data-path worker thread logs it and exits, and the pool replaces it while the
 * other threads serve; a single process logs it and exits 70 so a supervisor starts
 * a clean one. The exception comes from user code, as it would in production: a
 * custom policy module that throws from a timer when it sees the path /boom.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startBackend } from '../../src/backend/demo-backend.ts';
import { captureLog } from '../proxy/log-capture.ts';
import { eventually, get, startInProcess, startVelocityProcess, testAgent } from '../support/velocity.ts';

const BOOM = 'a custom policy failed outside any request';

/** A config whose one service balances with a policy module that throws, uncaught, after picking for /boom. */
async function throwingPolicyConfig(t: { after(fn: () => unknown): void }, extra: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'velocity-uncaught-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const module = join(dir, 'throwing-policy.mjs');
  writeFileSync(
    module,
    `export default () => ({
  pick(servers, request, usable) {
    if (request.url.startsWith('/boom')) setImmediate(() => { throw new Error(${JSON.stringify(BOOM)}); });
    return servers.find(usable);
  },
});
`,
  );
  const backend = await startBackend({ port: 0, name: 'b1' });
  t.after(() => backend.close());
  return `listen: "127.0.0.1:0"
admin: { enabled: false }
${extra}
services:
  - name: app
    policy: { module: ${JSON.stringify(module)} }
    servers: [http://127.0.0.1:${backend.port}]
`;
}

test('a worker thread with an uncaught exception logs it, exits and is replaced; requests go on being served', async (t) => {
  const log = captureLog('info');
  const velocity = await startInProcess(t, await throwingPolicyConfig(t, 'workers: 2'), { logger: log.logger });
  const threads = velocity.threads;
  assert.ok(threads, 'worker threads run');
  const agent = testAgent(t);
  const url = `http://127.0.0.1:${velocity.address.port}`;
  await get(agent, `${url}/boom`).catch(() => undefined);
  await eventually(() => threads.restarts === 1, 60_000, 'the failed thread is replaced');
  const fatal = log.lines.find((l) => /uncaught exception on a data-path thread/.test(String(l.msg)));
  assert.ok(fatal, 'the exception is logged');
  assert.match(JSON.stringify(fatal), new RegExp(BOOM));
  assert.equal(log.find(/data-path thread exited; replacing it/).length, 1);
  for (let i = 0; i < 20; i++) assert.equal((await get(agent, `${url}/after-${i}`)).status, 200);
  assert.equal(threads.restarts, 1, 'no other thread failed');
});

test('a single process with an uncaught exception logs it and exits 70', async (t) => {
  const velocity = await startVelocityProcess(t, await throwingPolicyConfig(t, 'workers: 1'));
  const exited = once(velocity.child, 'exit');
  await get(testAgent(t), `${velocity.url}/boom`).catch(() => undefined);
  const [code] = (await Promise.race([exited, new Promise((_, reject) => setTimeout(() => reject(new Error('the process did not exit within 60 s')), 60_000))])) as [number | null];
  assert.equal(code, 70);
  const output = velocity.logs.output();
  assert.match(output, /uncaught exception; exiting so a supervisor restarts Velocity/);
  assert.match(output, new RegExp(BOOM));
});
