/**
 * The npm package as users get it: `npm pack` holds only runtime files, and the tarball installed
 * into an empty folder — beside the pinned `node` package, the README's route to Node 24 —
 * runs `velocity --version`, `validate`, `init` and `proxy`.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { get, startBackends, stopChild, testAgent, watchOutput } from '../support/velocity.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; devDependencies: Record<string, string> };
const work = mkdtempSync(join(tmpdir(), 'velocity-pkg-'));
const prefix = join(work, 'app');
const installedBin = join(prefix, 'node_modules', '.bin');
/** As `npx` runs: the prefix's bin folder first, so `node` is the pinned Node 24, not the system's. */
const env = { ...process.env, PATH: [installedBin, '/usr/local/bin', '/usr/bin', '/bin'].join(delimiter), npm_config_update_notifier: 'false' };

function npm(args: string[], cwd: string) {
  // npm itself runs on this Node; --offline: everything comes from the cache `npm install` filled.
  const result = spawnSync('npm', [...args, '--no-audit', '--no-fund'], { cwd, encoding: 'utf8', timeout: 600_000, env: { ...process.env, npm_config_update_notifier: 'false' } });
  assert.equal(result.status, 0, `npm ${args.join(' ')}:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

function velocity(args: string[], cwd = prefix) {
  return spawnSync(join(installedBin, 'velocity'), args, { cwd, encoding: 'utf8', env, timeout: 120_000 });
}

let tarball: string;
let files: string[];

// npm pack and an install take minutes on a loaded machine: beyond the suite's 3-minute default.
describe('the npm package', { timeout: 900_000 }, () => {
  before(
    () => {
      // --ignore-scripts: pack the dist/ that `npm test` built, without rebuilding it under running tests.
      const packed = JSON.parse(npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT)) as { filename: string; files: { path: string }[] }[];
      tarball = join(work, packed[0]?.filename as string);
      files = packed[0]?.files.map((f) => f.path) ?? [];
      mkdirSync(prefix);
      npm(['init', '-y'], prefix);
      npm(['install', '--prefer-offline', tarball, `node@${pkg.devDependencies.node}`], prefix);
      process.on('exit', () => rmSync(work, { recursive: true, force: true }));
    },
    { timeout: 900_000 },
  );

  test('holds only runtime files: the built code, the schema, the dashboard, examples and the README', () => {
    const allowed = /^(package\.json|README\.md|bin\/velocity\.js|dist\/.+\.(js|d\.ts|js\.map|json)|dashboard\/[^/]+|examples\/[^/]+)$/;
    assert.deepEqual(
      files.filter((f) => !allowed.test(f)),
      [],
    );
    for (const needed of ['bin/velocity.js', 'dist/cli.js', 'dist/index.js', 'dist/velocity.schema.json', 'dashboard/index.html', 'examples/velocity.service']) {
      assert.ok(files.includes(needed), `${needed} is in the package`);
    }
    assert.equal(
      files.some((f) => /^(src|test|bench|docs)\//.test(f)),
      false,
    );
  });

  test('installed from the tarball beside the pinned node package, velocity runs on Node 24', () => {
    assert.ok(existsSync(join(installedBin, 'node')), 'the node package put Node 24 in node_modules/.bin');
    const version = velocity(['--version']);
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout.trim(), pkg.version);
    assert.ok(existsSync(join(prefix, 'node_modules', 'velocity-lb', 'dist', 'velocity.schema.json')));
  });

  test('validate and init work from the installed package', () => {
    const example = join(prefix, 'node_modules', 'velocity-lb', 'examples', 'quickstart.yaml');
    const validated = velocity(['validate', '--config', example]);
    assert.equal(validated.status, 0, validated.stderr);
    assert.match(validated.stdout, /ok — 1 service\(s\), 3 server\(s\)/);
    const dir = mkdtempSync(join(work, 'init-'));
    assert.equal(velocity(['init'], dir).status, 0);
    const starter = velocity(['validate', '--config', 'velocity.yaml'], dir);
    assert.equal(starter.status, 0, starter.stderr);
  });

  test('velocity proxy from the installed package serves through to a backend', async (t) => {
    const [backend] = await startBackends(t, 1);
    const child = spawn(join(installedBin, 'velocity'), ['proxy', '--from', '127.0.0.1:0', '--to', `127.0.0.1:${backend?.port}`, '--admin', 'off'], {
      cwd: prefix,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.after(() => stopChild(child, 'SIGKILL'));
    const port = Number((await watchOutput(child).waitFor(/"listen":\["127\.0\.0\.1:(\d+)"/, 120_000))[1]);
    const res = await get(testAgent(t), `http://127.0.0.1:${port}/`);
    assert.equal(res.status, 200);
    assert.equal(res.body.trim(), 'hello from b1');
    assert.equal(await stopChild(child), 0);
  });
});
