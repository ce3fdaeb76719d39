/**
 * A restart under load with no failed request: `velocity start --takeover` listens beside the
 * running process (SO_REUSEPORT), then has it drain and exit; a plain start still refuses the
 * ports while either runs.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { freePort } from '../support/spawn.ts';
import { BIN, delay, eventually, startBackends, stopChild, testAgent, watchOutput } from '../support/velocity.ts';

test('start --takeover replaces a running Velocity under load with zero failed requests', async (t) => {
  const backends = await startBackends(t, 2);
  const dir = mkdtempSync(join(tmpdir(), 'velocity-takeover-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const [port, adminPort] = [await freePort(), await freePort()];
  const configFile = join(dir, 'velocity.yaml');
  const pidFile = join(dir, 'velocity.pid');
  writeFileSync(
    configFile,
    `listen: "127.0.0.1:${port}"
admin: { listen: "127.0.0.1:${adminPort}" }
shutdown_timeout: 20s
services:
  - name: app
    servers: [${backends.map((b) => b.url).join(', ')}]
`,
  );
  const launch = (extra: string[]) => {
    const child = spawn(process.execPath, [BIN, 'start', '--config', configFile, '--pid-file', pidFile, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => stopChild(child, 'SIGKILL'));
    return { child, logs: watchOutput(child), exit: new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code))) };
  };

  const old = launch([]);
  await old.logs.waitFor(/velocity is listening/, 60_000);
  const pidIn = () => {
    try {
      return readFileSync(pidFile, 'utf8').trim();
    } catch {
      return '';
    }
  };
  await eventually(() => pidIn() === String(old.child.pid), 10_000, 'the old process writes its PID');

  // Bounded load: 8 keep-alive clients, at most 20,000 requests and 120 s.
  const agent = testAgent(t);
  const url = `http://127.0.0.1:${port}/`;
  let ok = 0;
  const failures: string[] = [];
  let stop = false;
  const started = Date.now();
  const loop = async () => {
    while (!stop && ok + failures.length < 20_000 && Date.now() - started < 120_000) {
      try {
        const res = await request(url, { dispatcher: agent });
        await res.body.text();
        if (res.statusCode === 200) ok++;
        else failures.push(`status ${res.statusCode}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  const load = Promise.all(Array.from({ length: 8 }, loop));
  await eventually(() => ok >= 300, 60_000, 'load runs against the old process');

  const next = launch(['--takeover']);
  await next.logs.waitFor(/takeover: listening beside the old process/, 60_000);
  assert.equal(await old.exit, 0, 'the old process drained and exited cleanly');
  const atHandover = ok;
  await eventually(() => ok >= atHandover + 300, 60_000, 'the new process serves alone');
  stop = true;
  await load;

  assert.deepEqual(failures, [], `${failures.length} of ${ok + failures.length} requests failed`);
  assert.match(old.logs.output(), /"signal":"SIGTERM".*"msg":"stopping"/);
  assert.equal(pidIn(), String(next.child.pid), 'the pid file names the new process');
  const live = await request(`http://127.0.0.1:${adminPort}/livez`, { dispatcher: agent });
  assert.equal(live.statusCode, 200, 'the new process owns the admin listener');
  await live.body.text();

  // Without --takeover, the ports are still refused while a Velocity holds them.
  const plain = spawnSync(process.execPath, [BIN, 'start', '--config', configFile], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(plain.status, 1);
  assert.match(plain.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: the address is already in use`));
  assert.equal(await stopChild(next.child), 0);
  await delay(0);
});
