/** Shared state across real worker threads: what a dead thread held is given back. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { S, SharedState, V, withSpinLock } from '../../src/runtime/shared-state.ts';

test('a thread that dies inside a spin lock with requests in flight gives back both when released', async () => {
  const state = new SharedState(undefined, { servers: 8, services: 4, threads: 4, rateLimitSlots: 16 });
  const slot = state.allocateServer(Date.now());
  state.allocateService();
  // The main thread has one request of its own on the same server.
  Atomics.add(state.serverInts, state.serverIndex(slot, S.IN_FLIGHT), 1);
  Atomics.add(state.threadInFlight, 0 * state.serverCapacity + slot, 1);

  const worker = new Worker(new URL('./lock-holder.ts', import.meta.url), { workerData: { buffers: state.buffers, thread: 2, slot } });
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  const lock = state.serviceIndex(0, V.LOCK);
  assert.equal(Atomics.load(state.serviceInts, lock), 3, 'the lock names its holder (thread 2 + 1)');
  assert.equal(Atomics.load(state.serverInts, state.serverIndex(slot, S.IN_FLIGHT)), 3);

  await worker.terminate();
  state.releaseThread(2);
  assert.equal(Atomics.load(state.serverInts, state.serverIndex(slot, S.IN_FLIGHT)), 1, 'only the main thread’s request is left');
  assert.equal(Atomics.load(state.serviceInts, lock), 0, 'the lock is free again');
  assert.equal(
    withSpinLock(state.serviceInts, lock, () => 'taken'),
    'taken',
  );
  // Releasing a thread that held nothing changes nothing.
  state.releaseThread(3);
  assert.equal(Atomics.load(state.serverInts, state.serverIndex(slot, S.IN_FLIGHT)), 1);
});
