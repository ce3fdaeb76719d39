/**
 * Least connections, weighted: the usable server with the fewest in-flight
 * requests per unit of weight. Ties are broken in rotation so equal servers
 * share evenly instead of the first one taking every tie.
 */
import type { Policy, PolicyFactory } from './policy.ts';

export const leastConnections: PolicyFactory = (_options, { shared }): Policy => ({
  pick(servers, _request, usable) {
    const n = servers.length;
    if (n === 0) return undefined;
    const start = shared.next() % n;
    let best: (typeof servers)[number] | undefined;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const server = servers[(start + i) % n] as (typeof servers)[number];
      if (!usable(server)) continue;
      const load = server.inFlight / server.weight;
      if (load < bestLoad) {
        best = server;
        bestLoad = load;
      }
    }
    return best;
  },
});
