/**
 * Access-log lines a failed write loses are counted and logged (at most once a
 * minute), and the requests they describe are served as usual. /dev/full is a real
 * file whose writes fail with ENOSPC, as on a full disk.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { startBackend } from '../../src/backend/demo-backend.ts';
import { captureLog } from '../proxy/log-capture.ts';
import { eventually, get, startInProcess, testAgent } from '../support/velocity.ts';

test('a full disk under the access log: requests are served, lost lines are counted and logged once', async (t) => {
  assert.ok(existsSync('/dev/full'), 'this test needs /dev/full (Linux)');
  const backend = await startBackend({ port: 0, name: 'b1' });
  t.after(() => backend.close());
  const log = captureLog('info');
  const velocity = await startInProcess(
    t,
    `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
access_log: { output: /dev/full }
services:
  - name: app
    servers: [http://127.0.0.1:${backend.port}]
`,
    { logger: log.logger },
  );
  const agent = testAgent(t);
  for (let i = 0; i < 5; i++) assert.equal((await get(agent, `http://127.0.0.1:${velocity.address.port}/${i}`)).status, 200);
  const lost = async () => {
    const text = await (await fetch(`http://127.0.0.1:${velocity.adminAddress?.port}/metrics`)).text();
    return Number(/^velocity_access_log_lines_lost_total (\d+)/m.exec(text)?.[1] ?? 0);
  };
  await eventually(async () => (await lost()) === 5, 30_000, 'the five lost lines are counted');
  const logged = log.find(/access-log write failed; lines lost/);
  assert.equal(logged.length, 1, 'logged once, not once per failed write');
  assert.match(String(logged[0]?.err), /ENOSPC/);
});
