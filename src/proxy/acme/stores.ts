/**
 * Which storage an acme block uses, and the fleet connections behind them: one
 * per thread for every user of the same connection (managers, listeners), closed
 * when the last of them gives it back — a reload that stops using a Redis or an
 * etcd, or points at it with other credentials, closes the old connection.
 */

import { resolve } from 'node:path';
import { EtcdConfigStore } from '../../config/etcd-source.ts';
import { type AcmeConfig, defaultAcmeStorage } from '../../config/schema/acme.ts';
import type { Config } from '../../config/schema/root.ts';
import { describeTarget, type RedisTarget } from '../../guard/redis-clients.ts';
import type { Logger } from '../../observe/logger.ts';
import { EtcdStorage } from './etcd-storage.ts';
import { RedisStorage } from './redis-storage.ts';
import { type AcmeStorage, FileStorage } from './storage.ts';

/** A storage in use: `end()` gives it back (exactly once); the last user of a connection closes it. */
export interface StorageLease {
  readonly storage: AcmeStorage;
  end(): void;
}

export interface AcmeStoragesOptions {
  log: Logger;
  /** Where a relative storage directory and the relative files of `config_source.etcd` (TLS) resolve: the config file's folder. */
  baseDir: string;
  /** The instance's own client of `config_source.etcd`: storage in etcd uses it instead of opening another. */
  etcd?: EtcdConfigStore;
}

interface Opened {
  readonly storage: AcmeStorage;
  readonly close: () => void;
  users: number;
}

/** The connection settings of Redis, password and database included (the URL carries the database). */
const redisIdentity = (t: RedisTarget) => [t.url, t.sentinels, t.master, t.cluster, t.username, t.password, t.sentinel_password];

export class AcmeStorages {
  private readonly opened = new Map<string, Opened>();
  private readonly options: AcmeStoragesOptions;

  constructor(options: AcmeStoragesOptions) {
    this.options = options;
  }

  /**
   * What tells two storages apart: a directory, or a connection's full identity
   * (credentials included) and its key prefix. Equal identities share one connection.
   */
  identity(acme: Pick<AcmeConfig, 'storage'>, config: Pick<Config, 'state' | 'config_source'>): string {
    const storage = acme.storage;
    if (typeof storage !== 'object') return JSON.stringify(['dir', this.directory(storage)]);
    if (storage.redis) return JSON.stringify(['redis', redisIdentity(config.state), storage.redis.prefix]);
    const source = config.config_source?.etcd;
    if (!source) throw new Error('ACME storage in etcd needs config_source.etcd');
    // With the instance's client, that client is the connection (its settings are the running ones).
    const prefix = storage.etcd?.prefix ?? `${source.prefix}/acme/`;
    return JSON.stringify(['etcd', this.options.etcd ? 'instance' : source, prefix]);
  }

  /** The storage an acme block names (a directory, the `state` section's Redis, or the etcd of `config_source`), until the lease ends. */
  acquire(acme: Pick<AcmeConfig, 'storage'>, config: Pick<Config, 'state' | 'config_source'>): StorageLease {
    const storage = acme.storage;
    if (typeof storage !== 'object') return { storage: new FileStorage(this.directory(storage)), end: () => undefined };
    const id = this.identity(acme, config);
    let opened = this.opened.get(id);
    if (!opened) {
      opened = this.open(acme, config);
      this.opened.set(id, opened);
    }
    const entry = opened;
    entry.users++;
    let ended = false;
    return {
      storage: entry.storage,
      end: () => {
        if (ended) return;
        ended = true;
        if (--entry.users > 0 || this.opened.get(id) !== entry) return;
        this.opened.delete(id);
        entry.close();
      },
    };
  }

  /** A storage directory as an absolute path: a relative one is in the config file's folder (as policy modules, middleware files and config_source's TLS files are), whatever the working directory. */
  private directory(storage: string | undefined): string {
    return resolve(this.options.baseDir, storage ?? defaultAcmeStorage());
  }

  /** Closes every connection (at shutdown), leases still held or not. */
  close(): void {
    for (const opened of this.opened.values()) opened.close();
    this.opened.clear();
  }

  private open(acme: Pick<AcmeConfig, 'storage'>, config: Pick<Config, 'state' | 'config_source'>): Opened {
    const { redis, etcd } = acme.storage as Exclude<AcmeConfig['storage'], string | undefined>;
    if (redis) {
      const storage = new RedisStorage(config.state, redis.prefix, describeTarget(config.state), this.options.log);
      return { storage, close: () => storage.close(), users: 0 };
    }
    const source = config.config_source?.etcd;
    if (!source) throw new Error('ACME storage in etcd needs config_source.etcd');
    const prefix = etcd?.prefix ?? `${source.prefix}/acme/`;
    const given = this.options.etcd;
    // A thread without the instance's client (a data-path worker) opens its own, resolving files as the config does.
    const store = given ?? new EtcdConfigStore(source, this.options.baseDir);
    return { storage: new EtcdStorage(store, prefix), close: () => (given ? undefined : store.close()), users: 0 };
  }
}
