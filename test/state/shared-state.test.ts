/** Shared state across real worker threads: what a dead thread held is given back. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { SharedState } from '../../src/state/shared-state.ts';

test('a thread that dies inside a spin lock with requests in flight gives back both when released', async () => {
  const state = new SharedState(undefined, { servers: 8, services: 4, threads: 4, rateLimitSlots: 16 });
  const slot = state.allocateServer(Date.now());
  state.allocateService();
  // The main thread has one request of its own on the same server.
  assert.ok(state.server(slot, 0).tryAcquire());

  const worker = new Worker(new URL('./lock-holder.ts', import.meta.url), { workerData: { buffers: state.buffers, thread: 2, slot } });
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  assert.equal(state.server(slot).inFlight, 3);
  assert.equal(state.threadInFlightOf(2, slot), 2);
  assert.equal(state.service(0).lockHolder, 2, 'the lock names its holder');

  await worker.terminate();
  state.releaseThread(2);
  assert.equal(state.server(slot).inFlight, 1, 'only the main thread’s request is left');
  assert.equal(state.threadInFlightOf(2, slot), 0);
  assert.equal(state.service(0).lockHolder, undefined, 'the lock is free again');
  assert.equal(
    state.service(0).locked(() => 'taken'),
    'taken',
  );
  // Releasing a thread that held nothing changes nothing.
  state.releaseThread(3);
  assert.equal(state.server(slot).inFlight, 1);
});
