/**
 * A weighted consistent-hash ring with virtual nodes (as in Envoy's ring_hash and
 * HAProxy's `hash-type consistent`): each server owns `POINTS_PER_WEIGHT × weight`
 * points, so removing one of N servers moves only the keys it owned (~1/N) and
 * adding one moves only keys onto it. Points depend on server ids alone (never on
 * the input order or a random seed), so every thread, restart and instance with
 * the same servers maps keys the same way.
 */
import { hash32 } from './hash.ts';
import type { BalancedServer } from './policy.ts';

/** Points per unit of weight: enough that each server's share is within a few % of its weight. */
export const POINTS_PER_WEIGHT = 1000;
/** The ring never grows past this many points; only very large weights get fewer points per unit. */
export const MAX_POINTS = 1 << 18;

/** A point and its owner's index packed in one double (32 + 20 bits) so a typed-array sort orders both. */
const OWNER_BITS = 2 ** 20;

export class HashRing<T extends BalancedServer> {
  private readonly points: Uint32Array;
  private readonly owners: Uint32Array;
  /** Servers sorted by id: owner indexes point here, and ties on a point go to the smaller id. */
  private readonly servers: readonly T[];

  constructor(servers: readonly T[], weightOf: (s: T) => number = (s) => s.weight) {
    this.servers = [...servers].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const weights = this.servers.map((s) => Math.max(weightOf(s), 0.01));
    const total = weights.reduce((sum, w) => sum + w, 0);
    const perWeight = Math.min(POINTS_PER_WEIGHT, MAX_POINTS / Math.max(total, 1));
    const counts = weights.map((w) => Math.max(1, Math.round(perWeight * w)));
    const packed = new Float64Array(counts.reduce((sum, c) => sum + c, 0));
    let j = 0;
    for (const [owner, server] of this.servers.entries()) {
      for (let i = 0; i < (counts[owner] as number); i++) packed[j++] = hash32(`${server.id}#${i}`) * OWNER_BITS + owner;
    }
    packed.sort();
    this.points = new Uint32Array(packed.length);
    this.owners = new Uint32Array(packed.length);
    for (const [i, value] of packed.entries()) {
      const owner = value % OWNER_BITS;
      this.owners[i] = owner;
      this.points[i] = (value - owner) / OWNER_BITS;
    }
  }

  /** How many points the ring has (all servers together). */
  get size(): number {
    return this.points.length;
  }

  /**
   * The owner of `key`, walking clockwise past servers that are not usable — so an
   * unhealthy server's keys fall to the next server deterministically, and return
   * when it recovers. Undefined when no server is usable.
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
    let refused: Uint8Array | undefined;
    let refusedCount = 0;
    for (let i = 0; i < n && refusedCount < this.servers.length; i++) {
      const owner = this.owners[(lo + i) % n] as number;
      if (refused?.[owner]) continue;
      const server = this.servers[owner] as T;
      if (usable(server)) return server;
      refused ??= new Uint8Array(this.servers.length);
      refused[owner] = 1;
      refusedCount++;
    }
    return undefined;
  }
}
