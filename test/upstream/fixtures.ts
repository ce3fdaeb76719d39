/** Servers over a real SharedState for the unit tests of the failure-handling logic. */
import { SharedState } from '../../src/state/shared-state.ts';
import { UpstreamServer } from '../../src/upstream/server.ts';

export function sharedServers(n: number, state = new SharedState(undefined, { servers: 16, services: 4, threads: 4 })): UpstreamServer[] {
  return Array.from({ length: n }, (_, i) => {
    const slot = state.allocateServer(0);
    return new UpstreamServer({ id: `s${i}`, url: `http://127.0.0.1:${9000 + i}`, slot }, state, 0, { slowStartMs: 0, halfOpenLimit: 1 });
  });
}

/** The group of servers passive health limits ejections in; one thread, so the lock is a plain call. */
export function scopeOf(servers: readonly UpstreamServer[]) {
  return { servers, locked: <T>(fn: () => T): T => fn() };
}
