/** Which storage an acme block uses, and the connections that outlive reloads. */
import { type AcmeConfig, defaultAcmeStorage } from '../../config/schema/acme.ts';
import type { Config } from '../../config/schema/root.ts';
import { describeTarget } from '../../guard/redis-clients.ts';
import type { Logger } from '../../observe/logger.ts';
import { EtcdStorage } from './etcd-storage.ts';
import { RedisStorage } from './redis-storage.ts';
import { type AcmeStorage, FileStorage } from './storage.ts';

/** Fleet storages by where they point: one connection per thread however many listeners and reloads use it. */
const shared = new Map<string, RedisStorage | EtcdStorage>();

function sharedStorage(id: string, open: () => RedisStorage | EtcdStorage): AcmeStorage {
  let storage = shared.get(id);
  if (!storage) {
    storage = open();
    shared.set(id, storage);
  }
  return storage;
}

/** The storage an acme block names: a directory, the `state` section's Redis, or the etcd of `config_source`. */
export function acmeStorage(acme: Pick<AcmeConfig, 'storage'>, config: Pick<Config, 'state' | 'config_source'>, log: Logger): AcmeStorage {
  const storage = acme.storage;
  if (typeof storage !== 'object') return new FileStorage(storage ?? defaultAcmeStorage());
  const { state, config_source } = config;
  const { redis, etcd } = storage;
  if (redis) {
    const where = describeTarget(state);
    return sharedStorage(JSON.stringify(['redis', where, state.username, redis.prefix]), () => new RedisStorage(state, redis.prefix, where, log));
  }
  const source = config_source?.etcd;
  if (!source) throw new Error('ACME storage in etcd needs config_source.etcd');
  const prefix = etcd?.prefix ?? `${source.prefix}/acme/`;
  return sharedStorage(JSON.stringify(['etcd', source.endpoints, prefix]), () => new EtcdStorage(source, prefix));
}

/** Closes this thread's fleet storage connections (at shutdown). */
export function closeAcmeStorages(): void {
  for (const storage of shared.values()) storage.close();
  shared.clear();
}
