/**
 * Packages only some configs use load when a config first uses them: a plain Velocity
 * (main thread and worker threads) never loads the ACME client, etcd, Redis, PostgreSQL
 * or x509 packages, nor undici for its own requests; a reload that turns ACME and
 * request-sending middleware on loads them then, and a Redis state store loads its
 * client at start. Node's own HTTP/2 module is left unloaded the same way until an HTTP/2
 * listener, server or gRPC health check needs it. What loaded is read from a module-load record written by an
 * `--import` hook inside the real process (test/support/module-record.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { optionalModule } from '../../src/optional-module.ts';
import { freePort } from '../support/spawn.ts';
import { eventually, startVelocityProcess } from '../support/velocity.ts';

const HOOK = fileURLToPath(new URL('../support/module-record.ts', import.meta.url));
const OPTIONAL = ['acme-client', 'etcd3', 'ioredis', 'pg', '@peculiar/x509', 'undici', 'hash-wasm'];

/** Packages (of `names`) that the record shows loaded, per thread: main is thread 0. */
function loaded(recordFile: string, names: readonly string[]): { main: Set<string>; workers: Set<string>; workerUrls: string[] } {
  const main = new Set<string>();
  const workers = new Set<string>();
  const workerUrls: string[] = [];
  let text = '';
  try {
    text = readFileSync(recordFile, 'utf8');
  } catch {
    // Nothing resolved yet.
  }
  for (const line of text.split('\n')) {
    const [thread, url] = line.split(' ');
    if (!url) continue;
    if (thread !== '0') workerUrls.push(url);
    for (const name of names) if (url.includes(`/node_modules/${name}/`)) (thread === '0' ? main : workers).add(name);
  }
  return { main, workers, workerUrls };
}

function recorded(t: { after(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'velocity-modules-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'modules.txt');
  return { dir, file, env: { VELOCITY_MODULE_RECORD: file, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${HOOK}`.trim() } };
}

test('a plain config loads no optional package on any thread; a reload that turns on ACME, basic_auth and forward_auth loads theirs then', async (t) => {
  const record = recorded(t);
  const [httpsPort, closed] = [await freePort(), await freePort()];
  const plain = `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: optional-packages-token }
workers: 2
services:
  - name: app
    servers: [http://127.0.0.1:${closed}]
`;
  const velocity = await startVelocityProcess(t, plain, { env: record.env });
  const admin = Number((await velocity.logs.waitFor(/"admin":"127\.0\.0\.1:(\d+)"/))[1]);
  // Both worker threads are up once each has resolved its entry module.
  await eventually(() => loaded(record.file, []).workerUrls.filter((u) => u.endsWith('/runtime/worker.js')).length >= 2, 60_000, 'both worker threads started');
  const before = loaded(record.file, OPTIONAL);
  assert.ok(readFileSync(record.file, 'utf8').includes('/node_modules/pino/'), 'the record sees packages (pino, always used, is in it)');
  assert.deepEqual([...before.main], [], 'the main thread loaded no optional package');
  assert.deepEqual([...before.workers], [], 'no worker thread loaded an optional package');
  // What only the main thread uses (the YAML reader, the admin API) stays out of the workers.
  assert.deepEqual(
    before.workerUrls.filter((u) => u.includes('/node_modules/yaml/') || /\/admin\//.test(u)),
    [],
    'worker threads load neither the YAML reader nor the admin API',
  );
  const http2 = readFileSync(record.file, 'utf8')
    .split('\n')
    .filter((line) => line.endsWith(' node:http2'));
  assert.deepEqual(http2, [], 'no thread loads node:http2 for a config without HTTP/2');

  writeFileSync(
    velocity.configFile,
    `listeners:
  - type: https
    listen: 127.0.0.1:${httpsPort}
    tls:
      acme:
        email: ops@example.com
        ca: https://127.0.0.1:${closed}/dir
        storage: ${join(record.dir, 'acme')}
admin: { listen: "127.0.0.1:0", token: optional-packages-token }
workers: 2
services:
  - name: app
    hosts: [shop.example.com]
    servers: [http://127.0.0.1:${closed}]
    middleware:
      - basic_auth: { users: { ops: "$2b$10$yVCY2RkrDFajMNi.Pj0kb.xK4Zb8ai4pnVb/Xf0RF6/wdHhXVyIwe" } }
      - forward_auth: { url: "http://127.0.0.1:${closed}/verify" }
`,
  );
  const res = await request(`http://127.0.0.1:${admin}/api/v1/config/reload`, { method: 'POST', headers: { authorization: 'Bearer optional-packages-token' } });
  const result = (await res.body.json()) as { ok: boolean; errors?: string[] };
  assert.equal(result.ok, true, `the reload is applied: ${JSON.stringify(result)}`);
  await eventually(() => loaded(record.file, ['acme-client', '@peculiar/x509']).main.size === 2, 60_000, 'the ACME client and x509 load on the main thread');
  const after = loaded(record.file, OPTIONAL);
  assert.ok(after.main.has('hash-wasm') && after.main.has('undici'), `the middleware packages load where the config is checked: ${[...after.main]}`);
  await eventually(() => loaded(record.file, ['hash-wasm', 'undici']).workers.size === 2, 60_000, 'the worker threads that run the middleware load its packages');
  const end = loaded(record.file, OPTIONAL);
  for (const name of ['etcd3', 'ioredis', 'pg']) assert.ok(!end.main.has(name) && !end.workers.has(name), `${name} is still not loaded`);
  assert.ok(!end.workers.has('acme-client'), 'worker threads never load the ACME client (orders run on the main thread)');
});

test('a Redis state store loads the Redis client at start, and no other optional package', async (t) => {
  const record = recorded(t);
  const closed = await freePort();
  // Nothing listens there: Velocity waits (bounded) and falls back to local counting.
  await startVelocityProcess(
    t,
    `listen: "127.0.0.1:0"
admin: { enabled: false }
state: { store: redis, url: "redis://127.0.0.1:${closed}" }
services:
  - name: app
    servers: [http://127.0.0.1:${closed}]
`,
    { env: record.env },
  );
  const seen = loaded(record.file, OPTIONAL);
  assert.deepEqual([...seen.main].sort(), ['ioredis'], 'the Redis client, and no other optional package, is loaded');
});

test('active HTTP health checks load no optional package: each check is one GET on a connection of its own', async (t) => {
  const record = recorded(t);
  const checks: IncomingHttpHeaders[] = [];
  const backend = createServer((req, res) => {
    if (req.headers['user-agent'] === 'velocity-health-check') checks.push(req.headers);
    res.end('ok');
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  t.after(() => backend.close());
  const { port } = backend.address() as AddressInfo;
  await startVelocityProcess(
    t,
    `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [http://127.0.0.1:${port}]
    health: { type: http, path: /health, interval: 200ms, timeout: 5s }
`,
    { env: record.env },
  );
  await eventually(() => checks.length >= 3, 60_000, 'three health checks reached the server');
  assert.deepEqual([...loaded(record.file, OPTIONAL).main], [], 'the checks loaded no optional package (undici among them)');
  const [first] = checks;
  assert.equal(first?.host, `127.0.0.1:${port}`, "the check names the server's address as Host");
  assert.equal(first?.connection, 'close', 'the check closes its connection');
});

test('a package that cannot be loaded is an error naming the feature that needs it', () => {
  const load = optionalModule('velocity-no-such-package', 'the made-up feature');
  assert.throws(load, /the made-up feature needs the package "velocity-no-such-package", which could not be loaded: Cannot find module/);
});
