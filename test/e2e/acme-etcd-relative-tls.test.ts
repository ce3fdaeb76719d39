/**
 * ACME storage in the fleet's etcd over TLS, with the CA file named by a path
 * relative to the config file and Velocity started from another working
 * directory: the storage reaches etcd as the config load did (the instance's own
 * client on the main thread; files resolved against the config's folder on the
 * data-path threads), and the certificate is ordered and served.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { silentLogger } from '../../src/observe/logger.ts';
import { start } from '../../src/runtime/instance.ts';
import { certDir, createCa, issueCert } from '../support/certs.ts';
import { startEtcdCluster } from '../support/etcd.ts';
import { assertNoInternalErrors, watchLogger } from '../support/internal-errors.ts';
import { acmeLab, acmeYaml, waitForIssued } from './acme-support.ts';

test('ACME storage in a TLS etcd named with relative paths works when started from another directory', { timeout: 300_000 }, async (t) => {
  const dir = certDir(t);
  const ca = createCa(dir);
  const etcd = await startEtcdCluster(t, 1, { tls: { ca: ca.cert, ...issueCert(ca, ['127.0.0.1', 'localhost']) } });
  if (!etcd) return;
  const lab = await acmeLab(t);
  if (!lab) return;
  assert.notEqual(process.cwd(), dir, 'the relative path does not resolve from the working directory');
  const prefix = '/velocity/acme-relative';
  await etcd.client.put(`${prefix}/config`).value('services:\n  - { name: shop, hosts: [shop.example.com], servers: [] }\n');
  const file = join(dir, 'velocity.yaml');
  const own = acmeYaml(lab, { storage: '{ etcd: {} }', workers: 2 }).replace(/\nservices:[\s\S]*$/, '\n');
  writeFileSync(file, `${own}config_source: { etcd: { endpoints: [${etcd.endpoints.join(', ')}], prefix: ${prefix}, tls: { ca: ${basename(ca.cert)} } } }\n`);

  const internal: string[] = [];
  const velocity = await start(file, { logger: watchLogger(silentLogger(), internal) });
  t.after(async () => {
    await velocity.close();
    assertNoInternalErrors(internal, 'the instance');
  });
  const cert = await waitForIssued(lab.httpsPort, 'shop.example.com');
  assert.match(cert.subjectaltname ?? '', /DNS:shop\.example\.com/);
  const stored = await etcd.client.getAll().prefix(`${prefix}/acme/certificates/`).keys();
  assert.ok(
    stored.some((k) => k.endsWith('/shop.example.com/shop.example.com.pem')),
    stored.join(' '),
  );
});
