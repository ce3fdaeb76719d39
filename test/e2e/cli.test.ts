/** The `velocity` command: validate, start with a bad config, the old config format, and the demo backend. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { BIN, get, startBackendProcess, startVelocityProcess, testAgent, watchOutput } from '../support/velocity.ts';

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    // These commands end by themselves; the kill is only a backstop for a hung CLI, far past what a loaded
    // machine needs to start Node and load the config (14–30 s was seen under load average 40).
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function configFile(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'velocity-cli-')), 'velocity.yaml');
  writeFileSync(file, text);
  return file;
}

const BAD = `listen: "127.0.0.1:0"
services:
  - name: shop
    policy: round-robbin
    servers:
      - url: http://127.0.0.1:9001
        weight: 0
  - name: shop
    servrs: []
`;

describe('velocity validate', () => {
  test('a good config exits 0 with a one-line summary', async () => {
    const file = configFile('services:\n  - name: shop\n    servers: [http://127.0.0.1:9001, http://127.0.0.1:9002]\n');
    const { code, stdout } = await run(['validate', '--config', file]);
    assert.equal(code, 0);
    assert.match(stdout.trim(), /: ok — 1 service\(s\), 2 server\(s\), listening on 0\.0\.0\.0:8000$/);
  });

  test('a bad config exits 1 listing every problem as FILE:LINE:COLUMN: field: message', async () => {
    const file = configFile(BAD);
    const { code, stderr } = await run(['validate', '--config', file]);
    assert.equal(code, 1);
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 4, stderr);
    assert.match(
      lines[0] ?? '',
      new RegExp(`^${file}:4:13: services\\[0\\]\\.policy: unknown policy "round-robbin"; expected one of round-robin, .* \\(did you mean "round-robin"\\?\\)$`),
    );
    assert.equal(lines[1], `${file}:7:17: services[0].servers[0].weight: must be greater than 0`);
    assert.equal(lines[2], `${file}:9:5: services[1].servrs: unknown field "servrs" (did you mean "servers"?)`);
    assert.equal(lines[3], `${file}:8:11: services[1].name: duplicate service name "shop" (first at services[0])`);
  });

  test('a missing file is a clear error', async () => {
    const { code, stderr } = await run(['validate', '--config', '/nonexistent/velocity.yaml']);
    assert.equal(code, 1);
    assert.match(stderr, /\/nonexistent\/velocity\.yaml:1:1: \(root\): cannot read config: file not found/);
  });
});

describe('velocity start', () => {
  test('refuses a bad config with the same precise errors as validate', async () => {
    const file = configFile(BAD);
    const validate = await run(['validate', '--config', file]);
    const start = await run(['start', '--config', file]);
    assert.equal(start.code, 1);
    assert.ok(start.stderr.startsWith(validate.stderr), `start said:\n${start.stderr}`);
    assert.match(start.stderr, /4 problem\(s\); not starting/);
  });

  test('names the address when the port is in use', async (t) => {
    const [backend] = await Promise.all([startBackendProcess(t, 'b1')]);
    const file = configFile(`listen: "127.0.0.1:${backend?.port}"\nadmin: { enabled: false }\nservices:\n  - name: a\n    servers: [http://127.0.0.1:1]\n`);
    const { code, stderr } = await run(['start', '--config', file]);
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${backend?.port}: the address is already in use`));
  });

  test('runs an old Go Velocity config.yml unchanged and prints its current-format equivalent', async (t) => {
    const b1 = await startBackendProcess(t, 'legacy-1');
    const b2 = await startBackendProcess(t, 'legacy-2');
    const velocity = await startVelocityProcess(
      t,
      `api_port: 0
listen_port: 0
services:
  - name: shop
    domain: "shop:8000"
    targetURLs: [${b1.url}, ${b2.url}]
    algorythm: RoundRobin
`,
    );
    await velocity.logs.waitFor(/old Velocity format[\s\S]*policy: round-robin/);
    const agent = testAgent(t);
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(String((await get(agent, velocity.url, { headers: { host: 'shop:8000' } })).headers['x-backend']));
    assert.deepEqual([...seen].sort(), ['legacy-1', 'legacy-2']);
  });
});

describe('velocity backend', () => {
  test('answers every path with its name, /health, /status/CODE and ?delay', async (t) => {
    const b = await startBackendProcess(t, 'demo');
    const agent = testAgent(t);
    const hello = await get(agent, `${b.url}/anything`);
    assert.equal(hello.status, 200);
    assert.equal(hello.headers['x-backend'], 'demo');
    assert.equal(hello.body, 'hello from demo\n');
    assert.equal((await get(agent, `${b.url}/health`)).status, 200);
    assert.equal((await get(agent, `${b.url}/status/418`)).status, 418);
    const started = Date.now();
    await get(agent, `${b.url}/?delay=300`);
    assert.ok(Date.now() - started >= 290);
  });

  test('takes PORT and DURATION from the environment like the original', async (t) => {
    const child = spawn(process.execPath, [BIN, 'backend', '--name', 'env'], { env: { ...process.env, PORT: '0', DURATION: '0.2' }, stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    const m = await watchOutput(child).waitFor(/listening on 127\.0\.0\.1:(\d+)/);
    const agent = testAgent(t);
    const started = Date.now();
    const r = await get(agent, `http://127.0.0.1:${m[1]}/`);
    assert.equal(r.headers['x-backend'], 'env');
    assert.ok(Date.now() - started >= 190, 'DURATION=0.2 adds 200 ms');
  });
});

describe('velocity command line', () => {
  test('--help after a command prints the usage and exits 0', async () => {
    const r = await run(['backend', '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /velocity backend --port N/);
  });

  test('an unknown flag is named in one line with the usage, exit 2, and no stack trace', async () => {
    const r = await run(['start', '--confg', 'x.yaml']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /velocity start: .*'--confg'/);
    assert.match(r.stderr, /usage:/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });
});
