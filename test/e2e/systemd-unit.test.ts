/**
 * examples/velocity.service: systemd accepts it (`systemd-analyze verify`, which works without a
 * running systemd), it has the sandboxing operators expect, and the commands it runs work:
 * ExecStart starts Velocity, ExecReload's SIGHUP reloads, SIGTERM stops it cleanly.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { serviceUnavailable } from '../support/require-service.ts';
import { BIN, eventually, stopChild, watchOutput } from '../support/velocity.ts';

const UNIT = fileURLToPath(new URL('../../examples/velocity.service', import.meta.url));
const INSTALLED_BIN = '/usr/local/bin/velocity';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'velocity-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** systemd-analyze's findings for a unit text; empty when systemd accepts it as it is. */
function verify(dir: string, text: string): { status: number | null; findings: string } {
  const file = join(dir, 'velocity.service');
  writeFileSync(file, text);
  const result = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, findings: `${result.stdout}${result.stderr}`.trim() };
}

/** The unit as installed, except that ExecStart runs this checkout's binary (verify checks it exists). */
function unitForThisCheckout(): string {
  const text = readFileSync(UNIT, 'utf8');
  assert.equal(text.split(`ExecStart=${INSTALLED_BIN} start `).length, 2, 'one ExecStart running the installed velocity');
  return text.replace(`ExecStart=${INSTALLED_BIN} `, `ExecStart=${BIN} `);
}

function directive(text: string, key: string): string[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${key}=`))
    .map((line) => line.slice(key.length + 1));
}

describe('the systemd unit', () => {
  test('systemd-analyze verify accepts it with no finding, and would report a broken one', (t) => {
    if (!existsSync('/usr/bin/systemd-analyze') && !existsSync('/bin/systemd-analyze')) {
      return serviceUnavailable(t, 'systemd-analyze', 'not installed (apt-get install systemd)');
    }
    const dir = tempDir(t);
    const good = verify(dir, unitForThisCheckout());
    assert.equal(good.status, 0, good.findings);
    assert.equal(good.findings, '');
    // The same check fails on a misspelt key and a bad value: it is not a check that always passes.
    const bad = verify(dir, unitForThisCheckout().replace('DynamicUser=yes', 'DynamicUsr=yes').replace('NoNewPrivileges=yes', 'NoNewPrivileges=maybe'));
    assert.match(bad.findings, /Unknown key 'DynamicUsr'/);
    assert.match(bad.findings, /Failed to parse boolean value/);
  });

  test('sandboxes the service: its own user, low ports by capability only, a read-only system, a reload by SIGHUP', () => {
    const text = readFileSync(UNIT, 'utf8');
    assert.deepEqual(directive(text, 'DynamicUser'), ['yes']);
    assert.deepEqual(directive(text, 'AmbientCapabilities'), ['CAP_NET_BIND_SERVICE']);
    assert.deepEqual(directive(text, 'CapabilityBoundingSet'), ['CAP_NET_BIND_SERVICE']);
    assert.deepEqual(directive(text, 'ProtectSystem'), ['strict']);
    assert.deepEqual(directive(text, 'NoNewPrivileges'), ['yes']);
    assert.deepEqual(directive(text, 'ExecReload'), ['/bin/kill -HUP $MAINPID']);
    assert.ok(Number(directive(text, 'LimitNOFILE')[0]) >= 65536);
    assert.deepEqual(directive(text, 'MemoryDenyWriteExecute'), [], 'V8 needs writable, executable memory');
  });

  test('its commands work: ExecStart serves, ExecReload (SIGHUP) reloads, SIGTERM stops with exit 0', async (t) => {
    const dir = tempDir(t);
    const config = join(dir, 'velocity.yaml');
    const pidFile = join(dir, 'velocity.pid');
    writeFileSync(config, 'listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: [http://127.0.0.1:9]\n');
    const execStart = directive(readFileSync(UNIT, 'utf8'), 'ExecStart')[0] as string;
    const args = execStart
      .split(' ')
      .slice(1)
      .map((arg) => (arg === '/etc/velocity/velocity.yaml' ? config : arg === '/run/velocity/velocity.pid' ? pidFile : arg));
    assert.deepEqual(args, ['start', '--config', config, '--pid-file', pidFile]);
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => stopChild(child, 'SIGKILL'));
    const logs = watchOutput(child);
    await logs.waitFor(/velocity is listening/, 60_000);
    await eventually(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() === String(child.pid), 10_000, 'the pid file names the process');
    writeFileSync(config, 'listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: [http://127.0.0.1:9, http://127.0.0.1:10]\n');
    child.kill('SIGHUP');
    await logs.waitFor(/config reloaded/, 30_000);
    assert.equal(await stopChild(child), 0);
    assert.equal(existsSync(pidFile), false, 'the pid file is removed on exit');
  });
});
