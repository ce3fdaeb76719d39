/** A worker for circuit-breaker.test.ts: takes and gives back half-open trial tokens as fast as it can. */
import { parentPort, workerData } from 'node:worker_threads';
import { SharedState } from '../../src/state/shared-state.ts';
import { setLockOwner } from '../../src/state/spin-lock.ts';
import type { BreakerConfig } from '../../src/upstream/circuit-breaker.ts';
import { enterCircuit, leaveCircuit } from '../../src/upstream/circuit-breaker.ts';
import { UpstreamServer } from '../../src/upstream/server.ts';

const { buffers, thread, slot, config, probe, rounds } = workerData as {
  buffers: SharedState['buffers'];
  thread: number;
  slot: number;
  config: BreakerConfig;
  probe: SharedArrayBuffer;
  rounds: number;
};
setLockOwner(thread);
const state = new SharedState(buffers);
const server = new UpstreamServer({ id: 's', url: 'http://127.0.0.1:9', slot }, state, thread, { slowStartMs: 0, halfOpenLimit: config.half_open_requests });
// [0] tokens held now, [1] the most ever held.
const held = new Int32Array(probe);
let admitted = 0;
for (let i = 0; i < rounds; i++) {
  // Grab as many tokens as this thread can (each alone could take them all), then give them back.
  let mine = 0;
  while (mine < config.half_open_requests && enterCircuit(server, Date.now(), config, () => undefined)) {
    mine++;
    const now = Atomics.add(held, 0, 1) + 1;
    for (let most = Atomics.load(held, 1); now > most; most = Atomics.load(held, 1)) if (Atomics.compareExchange(held, 1, most, now) === most) break;
  }
  admitted += mine;
  for (; mine > 0; mine--) {
    Atomics.sub(held, 0, 1);
    leaveCircuit(server);
  }
}
parentPort?.postMessage(admitted);
