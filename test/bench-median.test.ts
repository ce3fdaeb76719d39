/** The bench's summary statistic: rounds are summarised by their median, and two rounds by their mean, not the worse one. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { median, type Run, sameRoundRatios } from '../bench/lib.ts';

test('the median of an odd count is the middle value, of an even count the mean of the middle two', () => {
  assert.equal(median([]), 0);
  assert.equal(median([7]), 7);
  assert.equal(median([12.32, 8.29]), (12.32 + 8.29) / 2);
  assert.equal(median([4, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
});

test("a ratio to another contender is the median of same-round ratios, with the rounds' spread", () => {
  const run = (contender: string, round: number, rps: number) =>
    ({ scenario: 'GET c=50', contender, round, rps, p50: 0, p99: 0, errors: 0, rssMb: 0, cpuUsPerRequest: 0, userUsPerRequest: 0, systemUsPerRequest: 0 }) as Run;
  // Round 1 ran on a busy machine: both contenders slowed alike, Velocity at half nginx's req/s as in round 0.
  // The same-round ratios are 0.5, 0.5, 0.4: median 0.5. The ratio of the two medians (12000 / 30000 = 0.4)
  // would set Velocity's busy-round median against nginx's quiet rounds.
  const runs = [run('nginx', 0, 30000), run('velocity', 0, 15000), run('nginx', 1, 10000), run('velocity', 1, 5000), run('nginx', 2, 30000), run('velocity', 2, 12000)];
  assert.deepEqual(
    sameRoundRatios(runs, 'GET c=50', 'velocity', 'nginx', (r) => r.rps),
    { median: 0.5, min: 0.4, max: 0.5 },
  );
  assert.equal(
    sameRoundRatios(runs, 'GET c=50', 'velocity', 'haproxy', (r) => r.rps),
    undefined,
  );
  assert.equal(
    sameRoundRatios(runs, 'GET c=1', 'velocity', 'nginx', (r) => r.rps),
    undefined,
  );
});
