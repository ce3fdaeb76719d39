/**
 * The command line a new user meets first: the Node version check, --version, `init`, and the
 * one-line `proxy` with its --print-config, all through the built binary.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { configJsonSchema } from '../../src/config/json-schema.ts';
import { parseConfig } from '../../src/config/load.ts';
import { VERSION } from '../../src/version.ts';
import { serviceUnavailable } from '../support/require-service.ts';
import { BIN, get, startBackends, stopChild, testAgent, watchOutput } from '../support/velocity.ts';

function run(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; node?: string } = {}) {
  const env = { ...process.env, ...options.env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  return spawnSync(options.node ?? process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: options.cwd, env, timeout: 60_000 });
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'velocity-op-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A Node older than 24 on this machine (the system's own, as `npm install -g` users have). */
function olderNode(): { path: string; version: string } | undefined {
  for (const path of ['/usr/bin/node', '/usr/local/bin/node', '/bin/node']) {
    if (!existsSync(path)) continue;
    const version = spawnSync(path, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim();
    if (Number(version.split('.')[0]) < 24) return { path, version };
  }
  return undefined;
}

/** Starts the binary with arguments; resolves once it logs where it listens. */
async function startCli(t: TestContext, args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => stopChild(child, 'SIGKILL'));
  const logs = watchOutput(child);
  const m = await logs.waitFor(/"listen":\["[^"]*:(\d+)"[^\n]*"admin":"[^"]*:(\d+)"/, 60_000);
  return { child, logs, port: Number(m[1]), adminPort: Number(m[2]) };
}

describe('the Node version check', () => {
  test('on an older Node the CLI says in one line that it needs Node 24, and exits 1', (t) => {
    const old = olderNode();
    if (!old) return serviceUnavailable(t, 'an older Node', 'no Node below 24 at /usr/bin/node (apt-get install nodejs)');
    for (const args of [['--help'], ['start', '--config', 'velocity.yaml'], ['--version']]) {
      const result = run(args, { node: old.path });
      assert.equal(result.status, 1, result.stderr);
      assert.equal(result.stderr, `velocity needs Node.js 24 or newer (found ${old.version}); see README: Install\n`);
      assert.equal(result.stdout, '');
    }
  });

  test('`velocity --version` prints the package version', () => {
    const result = run(['--version']);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), VERSION);
    assert.equal(VERSION, JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version);
  });
});

describe('velocity init', () => {
  test('writes a commented starter config that validates as it is, with its schema beside it for editors', (t) => {
    const dir = tempDir(t);
    const written = run(['init'], { cwd: dir });
    assert.equal(written.status, 0, written.stderr);
    const text = readFileSync(join(dir, 'velocity.yaml'), 'utf8');
    assert.equal(text.split('\n')[0], '# yaml-language-server: $schema=./velocity.schema.json');
    assert.ok(text.split('\n').filter((l) => l.includes('#')).length >= 10, 'the starter explains itself in comments');
    const schema = JSON.parse(readFileSync(join(dir, 'velocity.schema.json'), 'utf8'));
    assert.deepEqual(schema, configJsonSchema(VERSION));

    // Valid with the token variable unset (the API then only reads) and with it set.
    const unset = run(['validate', '--config', 'velocity.yaml'], { cwd: dir, env: { VELOCITY_ADMIN_TOKEN: undefined } });
    assert.equal(unset.status, 0, unset.stderr);
    const set = run(['validate', '--config', 'velocity.yaml'], { cwd: dir, env: { VELOCITY_ADMIN_TOKEN: 'a-long-enough-admin-token' } });
    assert.equal(set.status, 0, set.stderr);
    const { config } = parseConfig(text, 'velocity.yaml', { VELOCITY_ADMIN_TOKEN: 'a-long-enough-admin-token' });
    assert.equal(config.admin.token, 'a-long-enough-admin-token');
    assert.equal(config.services[0]?.health.type, 'http');
    assert.equal(config.rate_limits.length, 1);
    assert.equal(config.listeners[0]?.type, 'http');

    const validate = new Ajv2020({ strict: false }).compile(schema);
    assert.ok(validate(parse(text)), JSON.stringify(validate.errors));
  });

  test('does not overwrite an existing config unless told to', (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'velocity.yaml'), 'mine\n');
    const refused = run(['init'], { cwd: dir });
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /velocity\.yaml already exists; not overwriting \(--force to replace\)/);
    assert.equal(readFileSync(join(dir, 'velocity.yaml'), 'utf8'), 'mine\n');
    assert.equal(run(['init', '--force'], { cwd: dir }).status, 0);
    assert.match(readFileSync(join(dir, 'velocity.yaml'), 'utf8'), /^# yaml-language-server/);
  });
});

describe('velocity proxy', () => {
  test('runs a whole Velocity from flags: balancing, the policy, health checks and the admin API', async (t) => {
    const [a, b] = await startBackends(t, 2);
    const velocity = await startCli(t, [
      'proxy',
      '--from',
      '127.0.0.1:0',
      '--to',
      `127.0.0.1:${a?.port}`,
      '--to',
      `:${b?.port}`,
      '--policy',
      'least-connections',
      '--health',
      '/health',
      '--admin',
      '127.0.0.1:0',
    ]);
    const agent = testAgent(t);
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const res = await get(agent, `http://127.0.0.1:${velocity.port}/`);
      assert.equal(res.status, 200);
      seen.add(String(res.headers['x-backend']));
    }
    assert.deepEqual([...seen].sort(), ['b1', 'b2']);
    const service = JSON.parse((await get(agent, `http://127.0.0.1:${velocity.adminPort}/api/v1/services/proxy`)).body);
    assert.equal(service.policy, 'least-connections');
    assert.equal(service.servers.length, 2);
    const { config } = JSON.parse((await get(agent, `http://127.0.0.1:${velocity.adminPort}/api/v1/config`)).body);
    assert.equal(config.services[0].health.type, 'http');
    assert.equal(config.services[0].health.path, '/health');
    assert.equal(await stopChild(velocity.child), 0);
  });

  test('--print-config writes the same Velocity as a file that validates and starts', async (t) => {
    const [a, b] = await startBackends(t, 2);
    const flags = ['--from', '127.0.0.1:0', '--to', `127.0.0.1:${a?.port}`, '--to', `http://127.0.0.1:${b?.port}`, '--policy', 'least-connections', '--health', '/health'];
    const printed = run(['proxy', ...flags, '--admin', '127.0.0.1:0', '--print-config']);
    assert.equal(printed.status, 0, printed.stderr);
    const dir = tempDir(t);
    const file = join(dir, 'velocity.yaml');
    writeFileSync(file, printed.stdout);
    const validated = run(['validate', '--config', file]);
    assert.equal(validated.status, 0, validated.stderr);
    const { config } = parseConfig(printed.stdout);
    assert.equal(config.services[0]?.policy.name, 'least-connections');
    assert.deepEqual(
      config.services[0]?.servers.map((s) => s.url),
      [`http://127.0.0.1:${a?.port}`, `http://127.0.0.1:${b?.port}`],
    );
    const validate = new Ajv2020({ strict: false }).compile(configJsonSchema(VERSION));
    assert.ok(validate(parse(printed.stdout)), JSON.stringify(validate.errors));

    const fromFile = await startCli(t, ['start', '--config', file]);
    const res = await get(testAgent(t), `http://127.0.0.1:${fromFile.port}/`);
    assert.equal(res.status, 200);
    assert.match(String(res.headers['x-backend']), /^b[12]$/);
  });

  test('flags it cannot use are refused with a clear line, not a stack trace', () => {
    const none = run(['proxy', '--from', ':8000']);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /^velocity proxy: give at least one --to HOST:PORT/);
    const badPolicy = run(['proxy', '--to', '127.0.0.1:9001', '--policy', 'least-conections']);
    assert.equal(badPolicy.status, 1);
    assert.match(badPolicy.stderr, /services\[0\]\.policy: unknown policy "least-conections".*did you mean "least-connections"/);
    const badTarget = run(['proxy', '--to', 'ftp://127.0.0.1:21']);
    assert.equal(badTarget.status, 1);
    assert.match(badTarget.stderr, /services\[0\]\.servers\[0\]: unsupported scheme "ftp:"/);
    assert.doesNotMatch(badTarget.stderr + badPolicy.stderr, /\n\s+at /);
  });
});
