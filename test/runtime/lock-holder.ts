/** A worker for shared-state.test.ts: takes a service's spin lock and never lets go (until terminated). */
import { parentPort, workerData } from 'node:worker_threads';
import { SharedState, setLockOwner, V, withSpinLock } from '../../src/runtime/shared-state.ts';

const { buffers, thread, slot } = workerData as { buffers: SharedState['buffers']; thread: number; slot: number };
const state = new SharedState(buffers);
setLockOwner(thread);
const server = state.serverIndex(slot, 0);
// Hold two requests in flight on the server, as this thread's own.
Atomics.add(state.serverInts, server, 2);
Atomics.add(state.threadInFlight, thread * state.serverCapacity + slot, 2);
withSpinLock(state.serviceInts, state.serviceIndex(0, V.LOCK), () => {
  parentPort?.postMessage('holding');
  for (;;) {
    // Dies here, inside the critical section, when the main thread terminates it.
  }
});
