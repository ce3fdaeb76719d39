/**
 * The order lock, one suite over every ACME storage (a directory, a real
 * redis-server, a real etcd): a held lock makes a second taker wait and give up
 * with the holder named; ending it (twice is once) lets the waiter take it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { EtcdConfigStore } from '../../src/config/etcd-source.ts';
import { etcdSourceSchema } from '../../src/config/schema/fleet.ts';
import { silentLogger } from '../../src/observe/logger.ts';
import { EtcdStorage } from '../../src/proxy/acme/etcd-storage.ts';
import { RedisStorage } from '../../src/proxy/acme/redis-storage.ts';
import { type AcmeStorage, FileStorage, LockTimeoutError } from '../../src/proxy/acme/storage.ts';
import { startEtcdCluster } from '../support/etcd.ts';
import { startRedis } from '../support/redis.ts';

/** Long enough for any loaded machine to take a free lock; a held one is never taken within it. */
const WAIT_MS = 30_000;

const storages: Record<string, (t: TestContext) => Promise<AcmeStorage | undefined>> = {
  directory: async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'velocity-lock-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    return new FileStorage(dir);
  },
  redis: async (t) => {
    const redis = await startRedis(t);
    if (!redis) return undefined;
    const storage = new RedisStorage({ url: redis.url }, 'lock-test:', redis.url, silentLogger());
    t.after(() => storage.close());
    return storage;
  },
  etcd: async (t) => {
    const etcd = await startEtcdCluster(t, 1);
    if (!etcd) return undefined;
    const store = new EtcdConfigStore(etcdSourceSchema.parse({ endpoints: etcd.endpoints, prefix: '/lock-test' }), process.cwd());
    t.after(() => store.close());
    return new EtcdStorage(store, '/lock-test/acme/');
  },
};

describe('ACME storage locks', () => {
  for (const [kind, open] of Object.entries(storages)) {
    test(`${kind}: a held lock makes others wait and time out naming it; ended (once), the next taker gets it`, { timeout: 180_000 }, async (t) => {
      const storage = await open(t);
      if (!storage) return;
      const first = await storage.lock('shop.example.com', { waitMs: WAIT_MS, ttlMs: 60_000 });
      await assert.rejects(storage.lock('shop.example.com', { waitMs: 600, ttlMs: 60_000 }), (err: Error) => {
        assert.ok(err instanceof LockTimeoutError, err.message);
        assert.match(err.message, /^lock shop\.example\.com still held by .+ after \d+ s$/);
        return true;
      });
      // Another name is free meanwhile.
      await (await storage.lock('other.example.com', { waitMs: WAIT_MS })).end();

      const waiting = storage.lock('shop.example.com', { waitMs: WAIT_MS, ttlMs: 60_000 });
      await first.end();
      const second = await waiting;
      // A second end of the first lock does not release the lock the waiter now holds.
      await first.end();
      await assert.rejects(storage.lock('shop.example.com', { waitMs: 600 }), LockTimeoutError);
      await second.end();
      await (await storage.lock('shop.example.com', { waitMs: WAIT_MS })).end();
    });
  }
});
