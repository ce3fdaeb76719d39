/**
 * ACME storage for a fleet in etcd (the cluster `config_source.etcd` names): the
 * account, certificates and challenge answers are keys under PREFIX/acme/, each
 * written in one put; a key's mod_revision is its change stamp. The order lock is
 * etcd's own lock on a lease: kept alive by the client while held, gone with the
 * lease when its holder dies, released by its holder. etcd is linearizable, so a
 * leader change never lets two instances hold it at once.
 */
import type { Buffer } from 'node:buffer';
import { type EtcdConfigStore, etcd3 } from '../../config/etcd-source.ts';
import { type AcmeStorage, heldLock, type StorageLock, storageKey, waitForLock } from './storage.ts';

export class EtcdStorage implements AcmeStorage {
  readonly description: string;
  private readonly store: EtcdConfigStore;
  private readonly prefix: string;

  /** `store`: a client of the config_source etcd, owned (and closed) by the caller; `prefix` ends with `/`. */
  constructor(store: EtcdConfigStore, prefix: string) {
    this.store = store;
    this.prefix = prefix;
    this.description = `etcd ${store.endpoints.join(',')} ${prefix}`;
  }

  private key(key: string): string {
    return `${this.prefix}${storageKey(key)}`;
  }

  async read(key: string): Promise<Buffer | undefined> {
    return (await this.store.client.get(this.key(key)).buffer()) ?? undefined;
  }

  async write(key: string, value: string | Buffer): Promise<void> {
    await this.store.client.put(this.key(key)).value(value);
  }

  async remove(key: string): Promise<void> {
    await this.store.client.delete().key(this.key(key));
  }

  async stamp(key: string): Promise<string | undefined> {
    return (await this.store.client.get(this.key(key)).exec()).kvs[0]?.mod_revision;
  }

  async lock(name: string, options: { waitMs?: number; ttlMs?: number } = {}): Promise<StorageLock> {
    const waitMs = options.waitMs ?? 15 * 60_000;
    const ttlS = Math.max(2, Math.ceil((options.ttlMs ?? 60_000) / 1000));
    const key = this.key(`locks/${name}`);
    const lock = await waitForLock(
      name,
      waitMs,
      async () => {
        const attempt = this.store.client.lock(key).ttl(ttlS);
        try {
          await attempt.acquire();
          return attempt;
        } catch (err) {
          if (!(err instanceof etcd3().EtcdLockFailedError)) throw err;
          return undefined;
        }
      },
      async () => undefined,
    );
    // The client keeps the lease alive while held; not released (etcd away), the lease expires after the TTL.
    return heldLock(() => lock.release());
  }
}
