/**
 * SharedPolicyState kept in ordinary memory: for unit tests and for trying a
 * custom policy outside a running Velocity. Running services use the shared
 * memory version in src/upstream/service.ts.
 */
import type { BalancedServer, SharedPolicyState } from './policy.ts';

export function localPolicyState(): SharedPolicyState {
  let counter = 0;
  const cells = new Map<string, number>();
  return {
    next: () => counter++,
    locked: (fn) => fn(),
    get: (server: BalancedServer, cell) => cells.get(`${server.slot}:${cell}`) ?? 0,
    set: (server: BalancedServer, cell, value) => {
      cells.set(`${server.slot}:${cell}`, value);
    },
  };
}
