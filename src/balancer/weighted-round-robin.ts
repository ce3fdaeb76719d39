/**
 * Smooth weighted round robin, the interleaving nginx uses: each pick adds every
 * usable server's weight to its current value, takes the largest, and subtracts
 * the total from the winner. 5:1:1 gives a a b a c a a.
 */
import type { Policy, PolicyFactory } from './policy.ts';

export const weightedRoundRobin: PolicyFactory = (_options, { shared }): Policy => ({
  pick(servers, _request, usable) {
    return shared.locked(() => {
      let best: (typeof servers)[number] | undefined;
      let bestCurrent = 0;
      let total = 0;
      // Indexed: a service's server list is frozen, and for-of over a frozen array allocates its iterator per pick.
      for (let i = 0; i < servers.length; i++) {
        const server = servers[i] as (typeof servers)[number];
        if (!usable(server)) continue;
        const weight = Math.max(1, Math.round(server.weight * 100));
        const current = shared.get(server, 0) + weight;
        shared.set(server, 0, current);
        total += weight;
        if (best === undefined || current > bestCurrent) {
          best = server;
          bestCurrent = current;
        }
      }
      if (best) shared.set(best, 0, bestCurrent - total);
      return best;
    });
  },
});
