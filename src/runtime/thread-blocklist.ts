/**
 * Keeps the blocklists of the main thread and the worker threads in step. Each
 * thread has its own list object (a Map is not shared memory); a change made on
 * one — an operator's API call on the main thread, an auto-ban on a worker — is
 * passed to the others as a message. A Redis-backed list is shared already and
 * mirrors itself; only in-memory lists need this.
 */

import { parseCidr } from '../cidr.ts';
import { type BlockEntry, type Blocklist, BlocklistError, MemoryBlocklist } from '../guard/blocklist.ts';

/** A change made on one thread, for the others. */
export type BlocklistChange = { add: BlockEntry } | { remove: string };

/** Wraps a thread's blocklist: reports its own changes through `send`, applies others' with `apply`. */
export class ThreadBlocklist implements Blocklist {
  private readonly inner: Blocklist;
  /** Only in-memory lists are relayed: a Redis-backed one reaches every thread through Redis already. */
  private readonly relays: boolean;
  private readonly send: (change: BlocklistChange) => void;

  /** `send` passes this thread's changes to the other threads. */
  constructor(inner: Blocklist, send: (change: BlocklistChange) => void) {
    this.inner = inner;
    this.send = send;
    this.relays = inner instanceof MemoryBlocklist;
  }

  get size(): number {
    return this.inner.size;
  }

  async add(...args: Parameters<Blocklist['add']>): Promise<BlockEntry> {
    const entry = await this.inner.add(...args);
    if (this.relays) this.send({ add: entry });
    return entry;
  }

  async remove(target: string): Promise<boolean> {
    const removed = await this.inner.remove(target);
    if (this.relays) this.send({ remove: target });
    return removed;
  }

  list(): BlockEntry[] {
    return this.inner.list();
  }

  match(ip: bigint, now?: number): BlockEntry | undefined {
    return this.inner.match(ip, now);
  }

  /**
   * A change another thread made: stored as it was made there (same expiry), without
   * logging it again. Returns the reason when it could not be stored: each thread
   * sweeps expired entries on its own timer, so this list can be full while the
   * other had room. The thread that made the change still enforces it.
   */
  apply(change: BlocklistChange): string | undefined {
    if (!(this.inner instanceof MemoryBlocklist)) return undefined;
    if ('remove' in change) {
      this.inner.delete(change.remove);
      return undefined;
    }
    const range = parseCidr(change.add.cidr);
    if (!range) return undefined;
    try {
      this.inner.put({ ...change.add, range });
      return undefined;
    } catch (err) {
      if (err instanceof BlocklistError) return err.message;
      throw err;
    }
  }

  close(): void {
    this.inner.close();
  }
}
