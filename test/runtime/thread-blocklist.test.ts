/** Blocklist changes between threads: relayed only for in-memory lists, and a full list on one thread does not throw. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { parseCidr } from '../../src/cidr.ts';
import { type BlockEntry, type Blocklist, MAX_BLOCK_ENTRIES, MemoryBlocklist } from '../../src/guard/blocklist.ts';
import { type BlocklistChange, ThreadBlocklist } from '../../src/runtime/thread-blocklist.ts';

const quiet = pino({ level: 'silent' });
const entry = (cidr: string): BlockEntry => ({ cidr, reason: 'test', source: 'operator', expiresAt: null, addedAt: 0 }) as BlockEntry;

test('a change on an in-memory list is sent to the other threads and applied there', async () => {
  const sent: BlocklistChange[] = [];
  const here = new ThreadBlocklist(new MemoryBlocklist(quiet), (c) => sent.push(c));
  const there = new ThreadBlocklist(new MemoryBlocklist(quiet), () => {});
  await here.add('198.51.100.7');
  assert.equal(sent.length, 1);
  assert.equal(there.apply(sent[0] as BlocklistChange), undefined);
  assert.ok(there.match(parseCidr('198.51.100.7')?.base as bigint), 'the other thread refuses the address too');
  here.close();
  there.close();
});

test('a change on a shared (non-memory) list is not relayed: the store reaches every thread itself', async () => {
  const shared: Blocklist = {
    size: 0,
    add: async (cidr: string) => entry(cidr),
    remove: async () => true,
    list: () => [],
    match: () => undefined,
    close: () => {},
  } as unknown as Blocklist;
  const sent: BlocklistChange[] = [];
  const wrapped = new ThreadBlocklist(shared, (c) => sent.push(c));
  await wrapped.add('198.51.100.7');
  await wrapped.remove('198.51.100.7');
  assert.deepEqual(sent, []);
});

test('a change from another thread that does not fit a full list is refused with the reason, not thrown', () => {
  const inner = new MemoryBlocklist(quiet);
  for (let i = 0; i < MAX_BLOCK_ENTRIES; i++) {
    const cidr = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    inner.put({ ...entry(cidr), range: parseCidr(cidr) as NonNullable<ReturnType<typeof parseCidr>> } as Parameters<MemoryBlocklist['put']>[0]);
  }
  const list = new ThreadBlocklist(inner, () => {});
  assert.match(list.apply({ add: entry('203.0.113.9') }) ?? '', /full/);
  assert.equal(list.apply({ remove: '10.0.0.1' }), undefined, 'removals still apply');
  list.close();
});
