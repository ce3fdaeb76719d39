import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newRequestId } from '../../src/proxy/request-id.ts';
import { heapHeldByKept } from '../support/retained.ts';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('request ids are random version-4 UUIDs, distinct across many batches', () => {
  const seen = new Set<string>();
  const firstDigits = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    const id = newRequestId();
    assert.match(id, UUID_V4);
    seen.add(id);
    firstDigits.add(id[0] as string);
  }
  assert.equal(seen.size, 10_000);
  // Every hex digit shows up where the id is fully random.
  assert.equal(firstDigits.size, 16);
});

test('an id kept alive holds a string of a few ids, not of its whole random batch', () => {
  // One id of every 1024 kept, each from another batch: 300 batch strings would be 10.8 MB, 300 runs of 128 ids 1.4 MB.
  const held = heapHeldByKept(newRequestId, 1024, 300);
  assert.ok(held < 4 * 1024 * 1024, `300 kept ids hold ${(held / 1024 / 1024).toFixed(1)} MB`);
});
