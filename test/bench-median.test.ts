/** The bench's summary statistic: rounds are summarised by their median, and two rounds by their mean, not the worse one. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { median } from '../bench/lib.ts';

test('the median of an odd count is the middle value, of an even count the mean of the middle two', () => {
  assert.equal(median([]), 0);
  assert.equal(median([7]), 7);
  assert.equal(median([12.32, 8.29]), (12.32 + 8.29) / 2);
  assert.equal(median([4, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
});
