/** The retry budget on its own, with an injected clock. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SharedState } from '../../src/state/shared-state.ts';
import { RetryBudget } from '../../src/upstream/retry-budget.ts';

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

describe('retry budget', () => {
  test('allows the floor plus a fraction of the requests of the last second', () => {
    const [budget] = budgets(1, 0.2, 2) as [RetryBudget];
    for (let i = 0; i < 50; i++) budget.recordRequest(1_000);
    assert.ok(budget.hasRoom(1_500));
    assert.equal(drain(budget, 1_500), 2 + 10);
    assert.equal(budget.hasRoom(1_600), false);
    // The next second starts with the previous second's requests as its base.
    budget.recordRequest(2_100);
    assert.equal(drain(budget, 2_200), 12);
  });

  test('a quiet gap forgets old traffic: after it only the floor remains', () => {
    const [budget] = budgets(1, 0.5, 1) as [RetryBudget];
    for (let i = 0; i < 100; i++) budget.recordRequest(1_000);
    assert.equal(drain(budget, 5_000), 1);
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
});
