/**
 * Keeps the blocklists of the main thread and the worker threads in step. Each
 * thread has its own list object (a Map is not shared memory); a change made on
 * one — an operator's API call on the main thread, an auto-ban on a worker — is
 * passed to the others as a message. A Redis-backed list is shared already and
 * mirrors itself; only in-memory lists need this.
 */
import { type BlockEntry, type Blocklist, MemoryBlocklist } from '../guard/blocklist.ts';
import { parseCidr } from '../guard/cidr.ts';

/** A change made on one thread, for the others. */
export type BlocklistChange = { add: BlockEntry } | { remove: string };

/** Wraps a thread's blocklist: reports its own changes through `send`, applies others' with `apply`. */
export class ThreadBlocklist implements Blocklist {
  private readonly inner: Blocklist;
  send: (change: BlocklistChange) => void = () => {};

  constructor(inner: Blocklist) {
    this.inner = inner;
  }

  get size(): number {
    return this.inner.size;
  }

  async add(...args: Parameters<Blocklist['add']>): Promise<BlockEntry> {
    const entry = await this.inner.add(...args);
    this.send({ add: entry });
    return entry;
  }

  async remove(target: string): Promise<boolean> {
    const removed = await this.inner.remove(target);
    this.send({ remove: target });
    return removed;
  }

  list(): BlockEntry[] {
    return this.inner.list();
  }

  match(ip: bigint, now?: number): BlockEntry | undefined {
    return this.inner.match(ip, now);
  }

  /** A change another thread made: stored as it was made there (same expiry), without logging it again. */
  apply(change: BlocklistChange): void {
    if (!(this.inner instanceof MemoryBlocklist)) return;
    if ('remove' in change) {
      this.inner.delete(change.remove);
      return;
    }
    const range = parseCidr(change.add.cidr);
    if (range) this.inner.put({ ...change.add, range });
  }

  close(): void {
    this.inner.close();
  }
}
