/**
 * The connections to Redis that shared rate limits and the shared blocklist use:
 * one for commands, one for pub/sub. Commands fail fast — no offline queue, short
 * timeouts — so a Redis outage never holds a request; after a failure Redis is not
 * asked again for a second (a hung Redis costs one request a timeout per second, not
 * every request). ioredis reconnects by itself; going down and coming back are each
 * logged once.
 */
import type { Logger } from '../observe/logger.ts';
import { describeTarget, keyHolders, openRedis, type RedisClient, type RedisTarget } from './redis-clients.ts';

/** How long a failed command keeps Redis out of the request path. */
const SUSPEND_MS = 1_000;

export class RedisConnection {
  readonly client: RedisClient;
  readonly subscriber: RedisClient;
  readonly prefix: string;
  /** Where Redis is, for logs. */
  readonly where: string;
  private readonly log: Logger;
  private readonly onDown: () => void;
  private down = false;
  private suspendedUntil = 0;
  private readonly handlers = new Map<string, (message: string) => void>();
  private readonly subscribedListeners: (() => void)[] = [];

  /** `timeoutMs`: how long a command may take before it counts as failed; `onDown`: called once per outage (for a metric). */
  constructor(target: RedisTarget, prefix: string, timeoutMs: number, log: Logger, onDown: () => void = () => undefined) {
    this.prefix = prefix;
    this.log = log;
    this.onDown = onDown;
    this.where = describeTarget(target);
    ({ client: this.client, subscriber: this.subscriber } = openRedis(target, timeoutMs));
    for (const c of [this.client, this.subscriber]) c.on('error', (err: Error) => this.failed(err));
    // A connection that drops (a primary killed in a failover) may end without an error event.
    this.client.on('reconnecting', () => this.failed(new Error('connection lost')));
    this.client.on('ready', () => this.recovered());
    this.subscriber.on('message', (channel: string, message: string) => this.handlers.get(channel)?.(message));
    // Without an offline queue, subscribing waits for each (re)connection; then listeners
    // catch up on what they missed while unsubscribed.
    this.subscriber.on('ready', () => void this.resubscribe());
  }

  private async resubscribe(): Promise<void> {
    if (this.handlers.size === 0) return;
    try {
      await this.subscriber.subscribe(...this.handlers.keys());
      for (const l of this.subscribedListeners) l();
    } catch (err) {
      this.failed(err as Error);
    }
  }

  /** Whether requests should ask Redis now. */
  usable(now = Date.now()): boolean {
    return this.client.status === 'ready' && now >= this.suspendedUntil;
  }

  /** A command failed or the connection dropped: keep Redis out of the request path for a moment. */
  failed(err: Error): void {
    this.suspendedUntil = Date.now() + SUSPEND_MS;
    if (this.down) return;
    this.down = true;
    this.onDown();
    this.log.error({ err: err.message, redis: this.where }, 'redis unreachable: rate limits and the blocklist fall back to this instance; reconnecting');
  }

  /** A command succeeded or the connection is ready again. */
  recovered(): void {
    if (!this.down) return;
    this.down = false;
    this.suspendedUntil = 0;
    this.log.info({ redis: this.where }, 'redis reachable again: shared rate limits and blocklist resumed');
  }

  /** Resolves true once the command connection is ready, false after `timeoutMs`. */
  waitReady(timeoutMs: number): Promise<boolean> {
    if (this.client.status === 'ready') return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.client.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.client.on('ready', onReady);
    });
  }

  /** Delivers messages on `channel`; `onSubscribed` runs after every (re)subscription. */
  subscribe(channel: string, onMessage: (message: string) => void, onSubscribed: () => void): void {
    this.handlers.set(this.key(channel), onMessage);
    this.subscribedListeners.push(onSubscribed);
    if (this.subscriber.status === 'ready') void this.resubscribe();
  }

  /** The servers holding keys (every master of a cluster), for scans. */
  keyHolders(): RedisClient[] {
    return keyHolders(this.client);
  }

  key(name: string): string {
    return `${this.prefix}${name}`;
  }

  close(): void {
    this.client.disconnect();
    this.subscriber.disconnect();
  }
}
