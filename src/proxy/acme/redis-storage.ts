/**
 * ACME storage for a fleet in Redis (one server, Sentinel or Cluster: the
 * `state` section's connection settings): every instance reads the same account
 * and certificates, and the lock makes one instance order a name while the others
 * wait and then serve what it stored. Each value is one hash (value + change
 * stamp), so a write is atomic and lands in one cluster slot. The lock is the
 * single-primary Redis lock (SET NX PX, kept alive by its holder, released only by
 * it); a failover while an order runs can at worst let a second instance order
 * the same name once, which the CA's limits tolerate.
 */
import type { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { openRedisClient, type RedisClient, type RedisTarget } from '../../guard/redis-clients.ts';
import type { Logger } from '../../observe/logger.ts';
import { type AcmeStorage, heldLock, lockOwner, type StorageLock, storageKey, waitForLock } from './storage.ts';

/** How long one Redis command may take: storage is off the request path, so a slow Redis is waited for. */
const COMMAND_TIMEOUT_MS = 5_000;
/** How long an operation waits for a connection (at start, or while Redis fails over). */
const READY_WAIT_MS = 10_000;

const KEEP_ALIVE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export class RedisStorage implements AcmeStorage {
  readonly description: string;
  private readonly client: RedisClient;
  private readonly prefix: string;

  constructor(target: RedisTarget, prefix: string, description: string, log: Logger) {
    this.prefix = prefix;
    this.description = `redis ${description} ${prefix}`;
    this.client = openRedisClient(target, COMMAND_TIMEOUT_MS);
    // ioredis reconnects by itself; failed operations surface as storage errors (logged and retried by their callers).
    this.client.on('error', (err: Error) => log.debug({ err: err.message, storage: this.description }, 'ACME storage: redis connection error'));
  }

  private key(key: string): string {
    return `${this.prefix}${storageKey(key)}`;
  }

  /** Resolves once connected; throws when Redis stays unreachable. */
  private async connected(): Promise<RedisClient> {
    const deadline = Date.now() + READY_WAIT_MS;
    while (this.client.status !== 'ready') {
      if (this.client.status === 'end' || Date.now() >= deadline) throw new Error(`cannot reach ${this.description} (${this.client.status})`);
      await sleep(100);
    }
    return this.client;
  }

  async read(key: string): Promise<Buffer | undefined> {
    return (await (await this.connected()).hgetBuffer(this.key(key), 'value')) ?? undefined;
  }

  async write(key: string, value: string | Buffer): Promise<void> {
    await (await this.connected()).hset(this.key(key), 'value', value, 'stamp', `${Date.now()}:${randomBytes(6).toString('hex')}`);
  }

  async remove(key: string): Promise<void> {
    await (await this.connected()).del(this.key(key));
  }

  async stamp(key: string): Promise<string | undefined> {
    return (await (await this.connected()).hget(this.key(key), 'stamp')) ?? undefined;
  }

  async lock(name: string, options: { waitMs?: number; ttlMs?: number } = {}): Promise<StorageLock> {
    const waitMs = options.waitMs ?? 15 * 60_000;
    const ttlMs = options.ttlMs ?? 60_000;
    const key = this.key(`locks/${name}`);
    const owner = lockOwner();
    await waitForLock(
      name,
      waitMs,
      async () => ((await (await this.connected()).set(key, owner, 'PX', ttlMs, 'NX')) === 'OK' ? true : undefined),
      async () => (await this.client.get(key)) ?? undefined,
    );
    return heldLock(
      // Not released (Redis away): it expires after ttlMs.
      () => this.client.eval(RELEASE, 1, key, owner),
      { ttlMs, refresh: () => this.client.eval(KEEP_ALIVE, 1, key, owner, ttlMs) },
    );
  }

  close(): void {
    this.client.disconnect();
  }
}
