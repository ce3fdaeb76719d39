/** Which storage an acme block uses, and the connections that outlive reloads. */
import { type AcmeConfig, defaultAcmeStorage } from '../../config/schema/acme.ts';
import type { StateConfig } from '../../config/schema/traffic.ts';
import { describeTarget } from '../../guard/redis-clients.ts';
import type { Logger } from '../../observe/logger.ts';
import { RedisStorage } from './redis-storage.ts';
import { type AcmeStorage, FileStorage } from './storage.ts';

/** Redis storages by where they point: one connection per thread however many listeners and reloads use it. */
const redisStorages = new Map<string, RedisStorage>();

/** The storage an acme block names: a directory, or the `state` section's Redis. */
export function acmeStorage(acme: Pick<AcmeConfig, 'storage'>, state: StateConfig, log: Logger): AcmeStorage {
  if (typeof acme.storage !== 'object') return new FileStorage(acme.storage ?? defaultAcmeStorage());
  const { prefix } = acme.storage.redis;
  const where = describeTarget(state);
  const id = JSON.stringify([where, state.username, prefix]);
  let storage = redisStorages.get(id);
  if (!storage) {
    storage = new RedisStorage(state, prefix, where, log);
    redisStorages.set(id, storage);
  }
  return storage;
}

/** Closes this thread's Redis storage connections (at shutdown). */
export function closeAcmeStorages(): void {
  for (const storage of redisStorages.values()) storage.close();
  redisStorages.clear();
}
