/** A worker for shared-state.test.ts: takes a service's spin lock and never lets go (until terminated). */
import { parentPort, workerData } from 'node:worker_threads';
import { SharedState } from '../../src/state/shared-state.ts';
import { setLockOwner } from '../../src/state/spin-lock.ts';

const { buffers, thread, slot } = workerData as { buffers: SharedState['buffers']; thread: number; slot: number };
const state = new SharedState(buffers);
setLockOwner(thread);
// Hold two requests in flight on the server, as this thread's own.
const server = state.server(slot, thread);
server.tryAcquire();
server.tryAcquire();
state.service(0).locked(() => {
  parentPort?.postMessage('holding');
  for (;;) {
    // Dies here, inside the critical section, when the main thread terminates it.
  }
});
