/**
 * A weighted consistent-hash ring with virtual nodes (as in Envoy's ring_hash and
 * HAProxy's `hash-type consistent`): each server owns `VNODES × weight` points, so
 * removing one of N servers moves only the keys it owned (~1/N) and adding one
 * moves only keys onto it. Points depend on server ids alone, so every thread,
 * restart and instance with the same servers maps keys the same way.
 */
import { hash32 } from './hash.ts';
import type { BalancedServer } from './policy.ts';

const VNODES = 400;

export class HashRing<T extends BalancedServer> {
  private readonly points: Uint32Array;
  private readonly owners: T[];

  constructor(servers: readonly T[], weightOf: (s: T) => number = (s) => s.weight) {
    const entries: { point: number; server: T }[] = [];
    for (const server of servers) {
      const count = Math.max(1, Math.round(VNODES * Math.max(weightOf(server), 0.01)));
      for (let i = 0; i < count; i++) entries.push({ point: hash32(`${server.id}#${i}`), server });
    }
    // Ties broken by id so the order never depends on the input order.
    entries.sort((a, b) => a.point - b.point || (a.server.id < b.server.id ? -1 : a.server.id > b.server.id ? 1 : 0));
    this.points = Uint32Array.from(entries.map((e) => e.point));
    this.owners = entries.map((e) => e.server);
  }

  /**
   * The owner of `key`, walking clockwise past servers that are not usable — so an
   * unhealthy server's keys fall to the next server deterministically, and return
   * when it recovers.
   */
  lookup(key: string, usable: (s: T) => boolean): T | undefined {
    const n = this.points.length;
    if (n === 0) return undefined;
    const h = hash32(key);
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.points[mid] as number) < h) lo = mid + 1;
      else hi = mid;
    }
    const tried = new Set<T>();
    for (let i = 0; i < n; i++) {
      const owner = this.owners[(lo + i) % n] as T;
      if (tried.has(owner)) continue;
      if (usable(owner)) return owner;
      tried.add(owner);
    }
    return undefined;
  }
}
