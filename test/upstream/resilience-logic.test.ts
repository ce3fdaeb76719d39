/** The failure-handling state machines on their own, with an injected clock. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { circuitBreakerSchema, passiveHealthSchema } from '../../src/config/schema/resilience.ts';
import { S, SF, SharedState } from '../../src/runtime/shared-state.ts';
import { type CircuitChange, enterCircuit, recordCircuit } from '../../src/upstream/circuit-breaker.ts';
import { recordPassive } from '../../src/upstream/passive-health.ts';
import { RetryBudget } from '../../src/upstream/retry-budget.ts';
import { CIRCUIT_CLOSED, CIRCUIT_HALF_OPEN, CIRCUIT_OPEN, UpstreamServer } from '../../src/upstream/server.ts';

function servers(n: number): UpstreamServer[] {
  const state = new SharedState(undefined, { servers: 16, services: 4, threads: 2 });
  return Array.from({ length: n }, (_, i) => {
    const slot = state.allocateServer(0);
    return new UpstreamServer({ id: `s${i}`, url: `http://127.0.0.1:${9000 + i}`, slot }, state, 0);
  });
}

describe('circuit breaker', () => {
  const config = circuitBreakerSchema.parse({
    consecutive_failures: 3,
    failure_ratio: 0.5,
    min_requests: 10,
    window: '10s',
    open_duration: '1s',
    max_open_duration: '4s',
    half_open_requests: 1,
  });

  test('opens after N consecutive failures, half-opens after the open duration, closes on a trial success', () => {
    const [s] = servers(1) as [UpstreamServer];
    const changes: CircuitChange[] = [];
    const note = (c: CircuitChange) => changes.push(c);
    for (let i = 0; i < 3; i++) recordCircuit(s, true, 1000, config, note);
    assert.equal(s.int(S.CB_STATE), CIRCUIT_OPEN);
    assert.equal(s.float(SF.CB_OPEN_UNTIL), 2000);
    assert.equal(enterCircuit(s, 1500, config, note), false, 'still open');
    assert.equal(enterCircuit(s, 2000, config, note), true, 'first trial');
    assert.equal(s.int(S.CB_STATE), CIRCUIT_HALF_OPEN);
    assert.equal(enterCircuit(s, 2001, config, note), false, 'only one trial at a time');
    recordCircuit(s, false, 2100, config, note);
    assert.equal(s.int(S.CB_STATE), CIRCUIT_CLOSED);
    assert.deepEqual(
      changes.map((c) => `${c.from}>${c.to}`),
      ['closed>open', 'open>half-open', 'half-open>closed'],
    );
  });

  test('a failed trial re-opens for twice as long, capped at the maximum', () => {
    const [s] = servers(1) as [UpstreamServer];
    const durations: number[] = [];
    const note = (c: CircuitChange) => c.openForMs !== undefined && durations.push(c.openForMs);
    for (let i = 0; i < 3; i++) recordCircuit(s, true, 0, config, note);
    let now = 0;
    for (let round = 0; round < 4; round++) {
      now = s.float(SF.CB_OPEN_UNTIL);
      assert.ok(enterCircuit(s, now, config, note));
      recordCircuit(s, true, now, config, note);
    }
    assert.deepEqual(durations, [1000, 2000, 4000, 4000, 4000]);
  });

  test('opens on the failure ratio over the window once the minimum request count is reached', () => {
    const [s] = servers(1) as [UpstreamServer];
    const note = () => undefined;
    // Alternate success and failure: never 3 in a row, but 50% fail.
    for (let i = 0; i < 9; i++) recordCircuit(s, i % 2 === 0, 100 + i, config, note);
    assert.equal(s.int(S.CB_STATE), CIRCUIT_CLOSED, 'below min_requests');
    recordCircuit(s, false, 120, config, note);
    recordCircuit(s, true, 121, config, note);
    assert.equal(s.int(S.CB_STATE), CIRCUIT_OPEN);
  });

  test('failures older than the window are forgotten', () => {
    const [s] = servers(1) as [UpstreamServer];
    const note = () => undefined;
    for (let i = 0; i < 10; i++) recordCircuit(s, i % 2 === 0, 1000, config, note);
    assert.equal(s.int(S.CB_STATE), CIRCUIT_CLOSED);
    // Had the old requests still counted, this failure would make 6 of 12 and open the circuit.
    recordCircuit(s, false, 30_000, config, note);
    recordCircuit(s, true, 30_001, config, note);
    assert.equal(s.int(S.CB_STATE), CIRCUIT_CLOSED, 'only 2 requests in the current window');
  });
});

describe('passive health', () => {
  const config = passiveHealthSchema.parse({ consecutive_failures: 3, base_ejection: '10s', max_ejection: '60s', max_ejected_percent: 50 });

  test('ejects after N consecutive failures for base × 2^(ejections), capped', () => {
    const list = servers(4);
    const s = list[0] as UpstreamServer;
    const durations: number[] = [];
    let now = 0;
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 3; i++) recordPassive(list, s, true, now, config, (c) => durations.push(c.ejectedForMs));
      now = s.float(SF.EJECTED_UNTIL);
    }
    assert.deepEqual(durations, [10_000, 20_000, 40_000, 60_000]);
  });

  test('a success resets the count of consecutive failures', () => {
    const list = servers(2);
    const s = list[0] as UpstreamServer;
    const ejected: number[] = [];
    recordPassive(list, s, true, 0, config, () => ejected.push(1));
    recordPassive(list, s, true, 0, config, () => ejected.push(1));
    recordPassive(list, s, false, 0, config, () => ejected.push(1));
    recordPassive(list, s, true, 0, config, () => ejected.push(1));
    assert.deepEqual(ejected, []);
  });

  test('never ejects more than max_ejected_percent of the service', () => {
    const list = servers(4);
    const ejected: string[] = [];
    for (const s of list) for (let i = 0; i < 3; i++) recordPassive(list, s, true, 0, config, (c) => ejected.push(c.server));
    assert.deepEqual(ejected, ['s0', 's1']);
  });
});

describe('retry budget', () => {
  test('allows the floor plus a fraction of recent requests per second', () => {
    const state = new SharedState(undefined, { servers: 4, services: 4, threads: 1 });
    const slot = state.allocateService();
    const budget = new RetryBudget(state, slot, 0.2, 2);
    for (let i = 0; i < 50; i++) budget.recordRequest(1_000);
    let taken = 0;
    while (budget.tryTake(1_500)) taken++;
    assert.equal(taken, 2 + 10);
    // The next second starts with the previous second's requests as its base.
    budget.recordRequest(2_100);
    let next = 0;
    while (budget.tryTake(2_200)) next++;
    assert.equal(next, 12);
  });
});
