/** The circuit breaker's state machine on its own, with an injected clock, and its exactness across threads. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { circuitBreakerSchema } from '../../src/config/schema/resilience.ts';
import { CIRCUIT_CLOSED, CIRCUIT_HALF_OPEN, CIRCUIT_OPEN } from '../../src/state/server-cells.ts';
import { SharedState } from '../../src/state/shared-state.ts';
import { type CircuitChange, circuitAdmits, enterCircuit, leaveCircuit, openDuration, recordCircuit } from '../../src/upstream/circuit-breaker.ts';
import type { UpstreamServer } from '../../src/upstream/server.ts';
import { sharedServers } from './fixtures.ts';

const breaker = (overrides: Record<string, unknown> = {}) =>
  circuitBreakerSchema.parse({
    consecutive_failures: 3,
    failure_ratio: 0.5,
    min_requests: 10,
    window: '10s',
    open_duration: '1s',
    max_open_duration: '4s',
    half_open_requests: 1,
    ...overrides,
  });
const config = breaker();
const ignore = () => undefined;

function one(): UpstreamServer {
  return sharedServers(1)[0] as UpstreamServer;
}

describe('circuit breaker', () => {
  test('opens after N consecutive failures, half-opens after the open duration, closes on a trial success', () => {
    const s = one();
    const changes: CircuitChange[] = [];
    const note = (c: CircuitChange) => changes.push(c);
    for (let i = 0; i < 3; i++) recordCircuit(s, true, 1000, config, note);
    assert.equal(s.circuitState, CIRCUIT_OPEN);
    assert.equal(s.circuitOpenUntil, 2000);
    assert.equal(circuitAdmits(s, 1500, 1), false, 'open: not available to policies');
    assert.equal(enterCircuit(s, 1500, config, note), false, 'still open');
    assert.equal(circuitAdmits(s, 2000, 1), true, 'open duration passed: a policy may pick it for a trial');
    assert.equal(enterCircuit(s, 2000, config, note), true, 'first trial');
    assert.equal(s.circuitState, CIRCUIT_HALF_OPEN);
    assert.equal(circuitAdmits(s, 2001, 1), false, 'the only trial token is taken');
    assert.equal(enterCircuit(s, 2001, config, note), false, 'only one trial at a time');
    recordCircuit(s, false, 2100, config, note);
    assert.equal(s.circuitState, CIRCUIT_CLOSED);
    assert.deepEqual(
      changes.map((c) => `${c.from}>${c.to}`),
      ['closed>open', 'open>half-open', 'half-open>closed'],
    );
    assert.equal(changes[0]?.reason, '3 failures in a row');
    assert.equal(changes[0]?.openForMs, 1000);
  });

  test('a failed trial re-opens for twice as long, capped at max_open_duration', () => {
    const s = one();
    const durations: number[] = [];
    const note = (c: CircuitChange) => c.openForMs !== undefined && durations.push(c.openForMs);
    for (let i = 0; i < 3; i++) recordCircuit(s, true, 0, config, note);
    for (let round = 0; round < 4; round++) {
      const now = s.circuitOpenUntil;
      assert.ok(enterCircuit(s, now, config, note));
      recordCircuit(s, true, now, config, note);
    }
    assert.deepEqual(durations, [1000, 2000, 4000, 4000, 4000]);
    assert.deepEqual(
      [0, 1, 2, 3, 40].map((n) => openDuration(config, n)),
      [1000, 2000, 4000, 4000, 4000],
    );
  });

  test('a circuit that fails again soon after closing keeps doubling; closed for max_open_duration it starts over', () => {
    const s = one();
    const durations: number[] = [];
    const note = (c: CircuitChange) => c.openForMs !== undefined && durations.push(c.openForMs);
    const failUntilOpen = (now: number) => {
      for (let i = 0; i < 3; i++) recordCircuit(s, true, now, config, note);
    };
    const trialSucceeds = () => {
      const now = s.circuitOpenUntil;
      assert.ok(enterCircuit(s, now, config, note));
      recordCircuit(s, false, now, config, note);
      assert.equal(s.circuitState, CIRCUIT_CLOSED);
      return now;
    };
    failUntilOpen(0); // open 1 s
    let closedAt = trialSucceeds();
    failUntilOpen(closedAt + 500); // flapping: 2 s
    closedAt = trialSucceeds();
    failUntilOpen(closedAt + 4_000); // closed for max_open_duration: back to 1 s
    assert.deepEqual(durations, [1000, 2000, 1000]);
  });

  test('opens on the failure ratio over the window once the minimum request count is reached', () => {
    const s = one();
    const reasons: string[] = [];
    // Alternate success and failure: never 3 in a row, but 50% fail.
    for (let i = 0; i < 9; i++) recordCircuit(s, i % 2 === 0, 100 + i, config, ignore);
    assert.equal(s.circuitState, CIRCUIT_CLOSED, 'below min_requests');
    recordCircuit(s, false, 120, config, ignore);
    recordCircuit(s, true, 121, config, (c) => reasons.push(c.reason));
    assert.equal(s.circuitState, CIRCUIT_OPEN);
    assert.deepEqual(reasons, ['6 of 11 requests failed in the last 10000 ms']);
  });

  test('failures older than the window are forgotten', () => {
    const s = one();
    for (let i = 0; i < 10; i++) recordCircuit(s, i % 2 === 0, 1000, config, ignore);
    assert.equal(s.circuitState, CIRCUIT_CLOSED);
    // Had the old requests still counted, this failure would make 6 of 12 and open the circuit.
    recordCircuit(s, false, 30_000, config, ignore);
    recordCircuit(s, true, 30_001, config, ignore);
    assert.equal(s.circuitState, CIRCUIT_CLOSED, 'only 2 requests in the current window');
  });

  test('the window works at any clock value (bucket numbers past 2^31)', () => {
    const s = one();
    const tiny = breaker({ window: '10ms' });
    const late = 2 ** 41 + 12_345; // ms: far beyond what an Int32 bucket number of 1 ms holds
    for (let i = 0; i < 10; i++) recordCircuit(s, i % 2 === 1, late + i / 10, tiny, ignore);
    assert.equal(s.circuitState, CIRCUIT_OPEN, '5 of 10 within one window');
  });

  test('answers that arrive while the circuit is open do not count', () => {
    const s = one();
    for (let i = 0; i < 3; i++) recordCircuit(s, true, 0, config, ignore);
    const until = s.circuitOpenUntil;
    for (let i = 0; i < 10; i++) recordCircuit(s, true, 10, config, ignore);
    assert.equal(s.circuitOpenUntil, until, 'late failures do not extend the open time');
    assert.equal(s.circuitFailures, 0);
  });

  test('a trial whose client went away gives its token back', () => {
    const s = one();
    for (let i = 0; i < 3; i++) recordCircuit(s, true, 0, config, ignore);
    assert.ok(enterCircuit(s, 1000, config, ignore));
    assert.equal(enterCircuit(s, 1000, config, ignore), false);
    leaveCircuit(s);
    assert.equal(s.circuitTrials, 0);
    assert.ok(enterCircuit(s, 1001, config, ignore), 'the token is free again');
  });

  test('opening and closing set when the server became usable, so slow start ramps it', () => {
    const s = one();
    for (let i = 0; i < 3; i++) recordCircuit(s, true, 500, config, ignore);
    assert.equal(s.usableSince, 1500, 'from the end of the open time');
    assert.ok(enterCircuit(s, 1600, config, ignore));
    recordCircuit(s, false, 1700, config, ignore);
    assert.equal(s.usableSince, 1700, 'from the close');
  });

  test('a disabled breaker never opens', () => {
    const s = one();
    const off = circuitBreakerSchema.parse({ enabled: false });
    for (let i = 0; i < 100; i++) recordCircuit(s, true, i, off, ignore);
    assert.equal(s.circuitState, CIRCUIT_CLOSED);
    assert.ok(enterCircuit(s, 100, off, ignore));
  });
});

describe('circuit breaker across threads', () => {
  test('two threads racing for half-open trial tokens never hold more than half_open_requests at once', async () => {
    const state = new SharedState(undefined, { servers: 4, services: 2, threads: 4 });
    const [s] = sharedServers(1, state) as [UpstreamServer];
    const three = breaker({ half_open_requests: 3 });
    for (let i = 0; i < 3; i++) recordCircuit(s, true, 0, three, ignore);
    // A cell the workers use to count tokens held right now, and the most ever held.
    const probe = new Int32Array(new SharedArrayBuffer(12));
    const run = (thread: number) =>
      new Promise<number>((resolve, reject) => {
        const worker = new Worker(new URL('./trial-racer.ts', import.meta.url), {
          workerData: { buffers: state.buffers, thread, slot: s.slot, config: three, probe: probe.buffer, rounds: 20_000 },
        });
        worker.once('message', (admitted: number) => resolve(admitted));
        worker.once('error', reject);
      });
    const admitted = await Promise.all([run(1), run(2)]);
    assert.ok(
      admitted.every((n) => n > 0),
      `both threads got trials: ${admitted}`,
    );
    assert.equal(Atomics.load(probe, 1), 3, 'at most (and at some point exactly) 3 trials held at once');
    assert.equal(s.circuitState, CIRCUIT_HALF_OPEN);
    assert.equal(s.circuitTrials, 0, 'every token given back');
  });
});
