/**
 * The fleet's etcd over TLS (https:// endpoints): an instance that trusts the CA named in
 * `config_source.etcd.tls` reads and follows the shared config; one that does not is refused at start
 * with the endpoints named, never served a config it could not verify.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { silentLogger } from '../../src/observe/logger.ts';
import { start } from '../../src/runtime/instance.ts';
import { certDir, createCa, issueCert } from '../support/certs.ts';
import { startEtcdCluster } from '../support/etcd.ts';
import { assertNoInternalErrors, watchLogger } from '../support/internal-errors.ts';
import { runCommand } from '../support/spawn.ts';
import { CLI, eventually, get, testAgent } from '../support/velocity.ts';

const PREFIX = '/velocity/tls';

test('an instance reads and follows the shared config from a TLS etcd; without the CA it is refused at start', { timeout: 300_000 }, async (t) => {
  const dir = certDir(t);
  const ca = createCa(dir);
  const server = issueCert(ca, ['127.0.0.1', 'localhost']);
  const cluster = await startEtcdCluster(t, 1, { tls: { ca: ca.cert, ...server } });
  if (!cluster) return;
  assert.match(cluster.endpoints[0] as string, /^https:/);

  const backend = (name: string) =>
    new Promise<string>((resolve) => {
      const s = createServer((req, res) => {
        req.resume();
        res.end(name);
      });
      t.after(() => new Promise((r) => s.close(r)));
      s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as { port: number }).port}`));
    });
  const first = await backend('first');
  const second = await backend('second');
  const shared = (url: string) => `services:\n  - name: web\n    servers: [${url}]\n`;
  await cluster.client.put(`${PREFIX}/config`).value(shared(first));

  const local = (tls: string) => `listen: 127.0.0.1:0
admin: { enabled: false }
config_source:
  etcd:
    endpoints: [${cluster.endpoints.join(', ')}]
    prefix: ${PREFIX}
${tls}`;
  const trusting = join(dir, 'trusting.yaml');
  writeFileSync(trusting, local(`    tls: { ca: ${ca.cert} }\n`));
  const internal: string[] = [];
  const velocity = await start(trusting, { logger: watchLogger(silentLogger(), internal) });
  t.after(async () => {
    await velocity.close();
    assertNoInternalErrors(internal, 'the TLS fleet instance');
  });
  const agent = testAgent(t);
  const url = `http://127.0.0.1:${velocity.address.port}/`;
  assert.equal((await get(agent, url)).body, 'first', 'the shared config read over TLS serves');
  // The watch runs over the same verified connection: a change reaches the instance.
  await cluster.client.put(`${PREFIX}/config`).value(shared(second));
  await eventually(async () => (await get(agent, url)).body === 'second', 60_000, 'the change made in etcd is followed');

  const untrusting = join(dir, 'untrusting.yaml');
  writeFileSync(untrusting, local(''));
  await assert.rejects(start(untrusting, { logger: silentLogger() }), (err: Error) => {
    assert.match(err.message, /cannot read the shared config at \/velocity\/tls\/config from etcd \(https:\/\/127\.0\.0\.1:\d+\)/);
    return true;
  });
});

test('config push and pull reach an etcd that takes only client certificates with --cacert, --cert and --key, as etcdctl does', { timeout: 300_000 }, async (t) => {
  const dir = certDir(t);
  const ca = createCa(dir);
  const server = issueCert(ca, ['127.0.0.1', 'localhost']);
  const client = issueCert(ca, ['velocity-operator']);
  const cluster = await startEtcdCluster(t, 1, { tls: { ca: ca.cert, ...server, client } });
  if (!cluster) return;
  // A bare HOST:PORT: the TLS flags make it https://, as with etcdctl.
  const endpoint = (cluster.endpoints[0] as string).replace(/^https:\/\//, '');
  const file = join(dir, 'shared.yaml');
  const text = 'services:\n  - name: web\n    servers: [http://127.0.0.1:8080]\n';
  writeFileSync(file, text);
  const cli = (args: string[]) => runCommand(process.execPath, [CLI, 'config', ...args, '--etcd', endpoint, '--prefix', PREFIX], { timeoutMs: 60_000 });
  const tls = ['--cacert', ca.cert, '--cert', client.cert, '--key', client.key];

  const pushed = await cli(['push', file, ...tls]);
  assert.equal(pushed.code, 0, pushed.stderr);
  assert.match(pushed.stdout + pushed.stderr, /pushed .* to \/velocity\/tls\/config at revision \d+/);
  assert.equal((await cluster.client.get(`${PREFIX}/config`).string()) ?? '', text, 'etcd holds the pushed file');
  const pulled = await cli(['pull', ...tls]);
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.equal(pulled.stdout, text);

  // Without a client certificate etcd refuses the connection: a clear error naming etcd, exit 1.
  const refused = await cli(['pull', '--cacert', ca.cert]);
  assert.equal(refused.code, 1, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /velocity config pull: etcd \(https:\/\/127\.0\.0\.1:\d+\): /);
  assert.doesNotMatch(refused.stderr, /fatal|TypeError/);
  // A certificate without its key is a usage error before any connection.
  const half = await cli(['pull', '--cacert', ca.cert, '--cert', client.cert]);
  assert.equal(half.code, 2);
  assert.match(half.stderr, /--cert\/--key: cert and key go together/);
});
