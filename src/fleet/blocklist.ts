/**
 * The blocklist of a fleet: an operator's block, made through any instance, is a key
 * under PREFIX/blocklist/ (with an etcd lease for its expiry), and every instance applies
 * it to its own list from its watch. Auto-bans stay with the instance that counted them.
 */

import { z } from 'zod';
import { parseCidr } from '../cidr.ts';
import type { EtcdConfigStore } from '../config/etcd-source.ts';
import { type BlockEntry, type Blocklist, BlocklistUnavailableError, blockEntry } from '../guard/blocklist.ts';
import type { Logger } from '../observe/logger.ts';
import { type EntryShape, readEntry } from './entries.ts';

/** PREFIX/blocklist/CIDR → this JSON. */
const sharedEntry = z.object({ cidr: z.string(), reason: z.string(), expiresAt: z.number().nullable() });
type SharedEntry = z.infer<typeof sharedEntry>;
const SHARED_ENTRY: EntryShape<SharedEntry> = { names: 1, value: sharedEntry, json: true };

export class FleetBlocklist implements Blocklist {
  private readonly store: EtcdConfigStore;
  private readonly inner: Blocklist;
  private readonly log: Logger;

  constructor(store: EtcdConfigStore, inner: Blocklist, log: Logger) {
    this.store = store;
    this.inner = inner;
    this.log = log;
  }

  /** Where the fleet's entries sit in etcd. */
  get prefix(): string {
    return this.store.key('blocklist', '');
  }

  private keyOf(cidr: string): string {
    return `${this.prefix}${encodeURIComponent(cidr)}`;
  }

  get size(): number {
    return this.inner.size;
  }

  async add(target: string, ttlMs?: number, reason = 'added by an operator', source: BlockEntry['source'] = 'operator'): Promise<BlockEntry> {
    if (source !== 'operator') return this.inner.add(target, ttlMs, reason, source);
    const entry = blockEntry(target, ttlMs, reason, source, Date.now());
    const shared: SharedEntry = { cidr: entry.cidr, reason, expiresAt: entry.expiresAt };
    const { client } = this.store;
    try {
      if (ttlMs) {
        // The key lives as long as the block: etcd deletes it at expiry and every instance sees the delete.
        const lease = client.lease(Math.ceil(ttlMs / 1000), { autoKeepAlive: false });
        await lease.put(this.keyOf(entry.cidr)).value(JSON.stringify(shared)).exec();
      } else await client.put(this.keyOf(entry.cidr)).value(JSON.stringify(shared)).exec();
    } catch (err) {
      throw new BlocklistUnavailableError(`etcd did not take the block (${(err as Error).message}); it may not have been made: retry`);
    }
    return this.inner.add(entry.cidr, ttlMs, reason, source);
  }

  async remove(target: string): Promise<boolean> {
    const range = parseCidr(target);
    if (!range) return this.inner.remove(target);
    let deleted = 0;
    try {
      deleted = Number((await this.store.client.delete().key(this.keyOf(range.text)).exec()).deleted);
    } catch (err) {
      throw new BlocklistUnavailableError(`etcd did not take the removal (${(err as Error).message}); retry`);
    }
    const local = await this.inner.remove(range.text);
    return deleted > 0 || local;
  }

  list(): BlockEntry[] {
    return this.inner.list();
  }

  match(ip: bigint, now?: number): BlockEntry | undefined {
    return this.inner.match(ip, now);
  }

  /** A change seen in the watch (from any instance, this one included); answers the entry's CIDR, or undefined when it was ignored. */
  applyRemote(key: string, value: string | undefined): string | undefined {
    const entry = readEntry(this.log, this.prefix, key, value, SHARED_ENTRY);
    const cidr = entry?.names[0];
    if (!entry || cidr === undefined) return undefined;
    const shared = entry.value;
    if (shared === undefined) {
      void this.inner.remove(cidr);
      return cidr;
    }
    const ttl = shared.expiresAt === null ? undefined : shared.expiresAt - Date.now();
    if (ttl !== undefined && ttl <= 0) return cidr;
    void this.inner
      .add(shared.cidr, ttl, shared.reason, 'operator')
      .catch((err: unknown) => this.log.warn({ key, err: (err as Error).message }, 'fleet: a blocklist entry in etcd was refused'));
    return cidr;
  }

  /** After a (re)connect: the operator entries become exactly those etcd holds now. */
  resync(entries: readonly { key: string; value: string }[]): void {
    const wanted = new Set(entries.map((e) => this.applyRemote(e.key, e.value)));
    for (const entry of this.inner.list()) if (entry.source === 'operator' && !wanted.has(entry.cidr)) void this.inner.remove(entry.cidr);
  }

  close(): void {
    this.inner.close();
  }
}
