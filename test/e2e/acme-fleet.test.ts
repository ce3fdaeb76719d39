/**
 * A fleet's ACME storage in Redis or etcd: two instances with no directory in
 * common keep the account, certificates, challenge answers and the order lock in
 * one real redis-server, or one real etcd, so one of them orders and both serve
 * the certificate.
 */
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { silentLogger } from '../../src/observe/logger.ts';
import { start, type Velocity } from '../../src/runtime/instance.ts';
import { startEtcdCluster } from '../support/etcd.ts';
import { assertNoInternalErrors, watchLogger } from '../support/internal-errors.ts';
import { startRedis } from '../support/redis.ts';
import { freePort } from '../support/spawn.ts';
import { acmeLab, acmeYaml, adminApi, assertOrderedOnceAndRenewedTogether, startAcmeVelocity } from './acme-support.ts';

test('two instances with storage in Redis order a name once, serve the same certificate, and a renewal by one reaches the other', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const lab = await acmeLab(t);
  if (!lab) return;
  const yaml = (ports: { httpsPort?: number; httpPort?: number }) =>
    `${acmeYaml(lab, { ...ports, storage: '{ redis: { prefix: "fleet:acme:" } }' })}state: { store: redis, url: "${redis.url}" }\n`;
  // Instance B has its own ports; pebble validates at A's listeners, which answer B's challenges from Redis too.
  const [httpsB, httpB] = [await freePort(), await freePort()];
  const [a, b] = await Promise.all([startAcmeVelocity(t, yaml({})), startAcmeVelocity(t, yaml({ httpsPort: httpsB, httpPort: httpB }))]);
  await assertOrderedOnceAndRenewedTogether(a, b, lab.httpsPort, httpsB);

  // It is all in Redis: nothing was written to the lab's storage directory.
  assert.deepEqual(readdirSync(lab.storage), []);
  const inspect = new Redis(redis.url);
  t.after(() => inspect.disconnect());
  const stored = (await inspect.keys('fleet:acme:*')).sort();
  assert.ok(
    stored.some((k) => /^fleet:acme:accounts\/.+\/account\.key$/.test(k)),
    stored.join(' '),
  );
  assert.ok(
    stored.some((k) => /^fleet:acme:certificates\/.+\/shop\.example\.com\/shop\.example\.com\.pem$/.test(k)),
    stored.join(' '),
  );
  assert.ok(!stored.some((k) => k.includes('locks/')), `the order lock was released: ${stored.join(' ')}`);
  const entry = (await adminApi(a, 'GET', '/api/v1/certificates/shop.example.com')).body.certificates[0];
  assert.match(String(entry?.storage), /^redis redis:\/\/127\.0\.0\.1:\d+ fleet:acme:$/);
});

test('two fleet instances with storage in etcd order a name once, serve the same certificate, and a renewal by one reaches the other', async (t) => {
  const etcd = await startEtcdCluster(t, 1);
  if (!etcd) return;
  const lab = await acmeLab(t);
  if (!lab) return;
  const prefix = '/velocity/acme-test';
  await etcd.client.put(`${prefix}/config`).value('services:\n  - { name: shop, hosts: [shop.example.com], servers: [] }\n');
  const internal: string[] = [];
  t.after(() => assertNoInternalErrors(internal, 'the fleet'));
  /** An instance of the fleet: its own file (listeners, admin, config_source), the services from etcd. */
  const instance = async (name: string, ports: { httpsPort?: number; httpPort?: number }): Promise<Velocity> => {
    const file = join(lab.storage, `${name}.yaml`);
    const own = acmeYaml(lab, { ...ports, storage: '{ etcd: {} }' }).replace(/\nservices:[\s\S]*$/, '\n');
    writeFileSync(file, `${own}config_source: { etcd: { endpoints: [${etcd.endpoints.join(', ')}], prefix: ${prefix}, id: ${name} } }\n`);
    const velocity = await start(file, { logger: watchLogger(silentLogger(), internal) });
    t.after(() => velocity.close());
    return velocity;
  };
  const [httpsB, httpB] = [await freePort(), await freePort()];
  const [a, b] = await Promise.all([instance('A', {}), instance('B', { httpsPort: httpsB, httpPort: httpB })]);
  await assertOrderedOnceAndRenewedTogether(a, b, lab.httpsPort, httpsB);

  const stored = (await etcd.client.getAll().prefix(`${prefix}/acme/`).keys()).sort();
  assert.ok(
    stored.some((k) => /\/acme\/accounts\/.+\/account\.key$/.test(k)),
    stored.join(' '),
  );
  assert.ok(
    stored.some((k) => /\/acme\/certificates\/.+\/shop\.example\.com\/shop\.example\.com\.pem$/.test(k)),
    stored.join(' '),
  );
  assert.ok(!stored.some((k) => k.includes('/locks/')), `the order lock was released: ${stored.join(' ')}`);
  assert.deepEqual(
    readdirSync(lab.storage).filter((f) => !f.endsWith('.yaml')),
    [],
    'nothing on disk but the instances\u2019 own files',
  );
});
