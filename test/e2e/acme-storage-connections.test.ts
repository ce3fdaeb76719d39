/**
 * The Redis connection behind ACME storage follows reloads: a reload that points
 * the state section at another database (same host) moves storage there over a
 * new connection and closes the old one; a reload that stops using Redis for
 * ACME closes its connection.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.ts';
import { startRedis } from '../support/redis.ts';
import { acmeLab, acmeYaml, startAcmeVelocity, waitForIssued, waitUntil } from './acme-support.ts';

test('a reload that changes or drops the Redis of ACME storage moves to a new connection and closes the old one', { timeout: 300_000 }, async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const lab = await acmeLab(t);
  if (!lab) return;
  // The inspecting connection stays on database 0; Velocity uses 1, then 2.
  const inspect = new Redis(redis.url);
  t.after(() => inspect.disconnect());
  const clients = async () => String(await inspect.client('LIST')).split('\n');
  /** The id of the connection reading ACME storage in `db` (certificates are polled with HGET every second). */
  const storageClient = async (db: number) => {
    let id: string | undefined;
    await waitUntil(`a storage connection on database ${db}`, async () => {
      id = (await clients()).find((line) => line.includes(` db=${db} `) && line.includes(' cmd=hget '))?.match(/^id=(\d+) /)?.[1];
      return id !== undefined;
    });
    return id as string;
  };
  const closed = async (id: string) => !(await clients()).some((line) => line.startsWith(`id=${id} `));
  const hasCertificate = async (db: number) => {
    const keys = await inspect.pipeline().select(db).keys('acme:certificates/*').select(0).exec();
    return ((keys?.[1]?.[1] ?? []) as string[]).some((k) => k.endsWith('/shop.example.com/shop.example.com.pem'));
  };
  const yaml = (db: number) => `${acmeYaml(lab, { storage: '{ redis: { prefix: "acme:" } }' })}state: { store: redis, url: "${redis.url}/${db}" }\n`;

  const velocity = await startAcmeVelocity(t, yaml(1));
  await waitForIssued(lab.httpsPort, 'shop.example.com');
  assert.ok(await hasCertificate(1), 'stored in database 1');
  const first = await storageClient(1);

  // The state store itself keeps its connections until a restart (reported); ACME storage follows the reload.
  const moved = await velocity.reload(parseConfig(yaml(2), 'reload.yaml').config);
  assert.equal(moved.ok, true, JSON.stringify(moved));
  assert.deepEqual(moved.restart_required, ['state']);
  await waitUntil('the certificate ordered again into database 2', () => hasCertificate(2), 120_000);
  const second = await storageClient(2);
  await waitUntil('the storage connection to database 1 closed', () => closed(first));

  const dropped = await velocity.reload(parseConfig(`${acmeYaml(lab)}state: { store: redis, url: "${redis.url}/2" }\n`, 'reload.yaml').config);
  assert.equal(dropped.ok, true, JSON.stringify(dropped));
  await waitUntil('the storage connection to database 2 closed', () => closed(second));
});
