import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newRequestId } from '../../src/proxy/request-id.ts';

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
