/** Plain round robin: each usable server in turn, weights ignored. */
import type { Policy, PolicyFactory } from './policy.ts';

export const roundRobin: PolicyFactory = (_options, { shared }): Policy => ({
  pick(servers, _request, usable) {
    const n = servers.length;
    if (n === 0) return undefined;
    const start = shared.next() % n;
    for (let i = 0; i < n; i++) {
      const server = servers[(start + i) % n] as (typeof servers)[number];
      if (usable(server)) return server;
    }
    return undefined;
  },
});
