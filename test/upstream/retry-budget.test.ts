/** The retry budget on its own, with an injected clock. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SharedState } from '../../src/state/shared-state.ts';
import { RetryBudget, WINDOW_MS } from '../../src/upstream/retry-budget.ts';

function budgets(count: number, ratio: number, floor: number): RetryBudget[] {
  const state = new SharedState(undefined, { servers: 4, services: 4, threads: 1 });
  const slot = state.allocateService();
  // One RetryBudget per thread, all over the same service slot.
  return Array.from({ length: count }, () => new RetryBudget(state.service(slot), ratio, floor));
}

const drain = (budget: RetryBudget, now: number) => {
  let taken = 0;
  while (budget.tryTake(now)) taken++;
  return taken;
};

const FLOOR_SECONDS = WINDOW_MS / 1000;

describe('retry budget', () => {
  test('allows the floor (per second of the window) plus a fraction of the requests of the window', () => {
    const [budget] = budgets(1, 0.2, 2) as [RetryBudget];
    for (let i = 0; i < 50; i++) budget.recordRequest(1_000);
    assert.ok(budget.hasRoom(1_500));
    assert.equal(drain(budget, 1_500), 2 * FLOOR_SECONDS + 10);
    assert.equal(budget.hasRoom(1_600), false);
    // The next window starts with the previous window's requests as its base.
    budget.recordRequest(WINDOW_MS + 100);
    assert.equal(drain(budget, WINDOW_MS + 200), 2 * FLOOR_SECONDS + 10);
  });

  test('a quiet gap forgets old traffic: after it only the floor remains', () => {
    const [budget] = budgets(1, 0.5, 1) as [RetryBudget];
    for (let i = 0; i < 100; i++) budget.recordRequest(1_000);
    assert.equal(drain(budget, 1_000 + 3 * WINDOW_MS), FLOOR_SECONDS);
  });

  test('every thread spends the same budget', () => {
    const [a, b] = budgets(2, 0.1, 0) as [RetryBudget, RetryBudget];
    for (let i = 0; i < 30; i++) (i % 2 ? a : b).recordRequest(1_000);
    assert.equal(drain(a, 1_100) + drain(b, 1_100), 3);
  });

  test('a budget of 0 with no floor never retries', () => {
    const [budget] = budgets(1, 0, 0) as [RetryBudget];
    for (let i = 0; i < 100; i++) budget.recordRequest(1_000);
    assert.equal(budget.hasRoom(1_000), false);
    assert.equal(drain(budget, 1_000), 0);
  });

  test('a frozen server: one per-try timeout after it froze, its share of requests is retried as one burst, and the default budget takes it all (#22)', () => {
    // The load: ~500 GET/s over three servers; budget 0.2, floor 10/s (the defaults).
    const [budget] = budgets(1, 0.2, 10) as [RetryBudget];
    let now = 0;
    const requests = (perSecond: number, seconds: number) => {
      const end = now + seconds * 1000;
      for (; now < end; now += 1000 / perSecond) budget.recordRequest(now);
    };
    requests(500, 12.3);
    // The server freezes: a third of the clients hang on it for the 1 s per-try timeout, so fewer new requests arrive…
    const frozenAt = now;
    requests(250, 1);
    // …and then the ~170 requests it held time out within a few hundred ms of each other: each needs a retry.
    let denied = 0;
    for (let i = 0; i < 170; i++) if (!budget.tryTake(frozenAt + 1_000 + i)) denied++;
    assert.equal(denied, 0, 'no retry of the burst is refused');
  });

  test('during a long outage retries stay within the budget: budget × requests + the floor per window', () => {
    const [budget] = budgets(1, 0.2, 10) as [RetryBudget];
    let taken = 0;
    // 500 requests per second for three windows, every one wanting a retry.
    for (let t = 0; t < 3 * WINDOW_MS; t += 2) {
      budget.recordRequest(t);
      if (t >= WINDOW_MS && budget.tryTake(t)) taken++;
    }
    const perWindow = 0.2 * 500 * FLOOR_SECONDS + 10 * FLOOR_SECONDS;
    assert.ok(taken <= 2 * perWindow, `${taken} retries ≤ ${2 * perWindow}`);
    assert.ok(taken >= perWindow, `the budget is used: ${taken}`);
  });
});
