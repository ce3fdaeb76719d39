/**
 * Latency-aware: the usable server with the lowest peak-EWMA latency × (in-flight + 1)
 * per weight (as Finagle and linkerd do). A server that slows down sheds load within
 * seconds; as its average decays back it regains its share. Servers not measured
 * yet count as the fastest measured one, so they get tried.
 */
import type { Policy, PolicyFactory } from './policy.ts';

export const leastResponseTime: PolicyFactory = (_options, { shared }): Policy => ({
  pick(servers, _request, usable) {
    const n = servers.length;
    if (n === 0) return undefined;
    let fastest = Number.POSITIVE_INFINITY;
    // Indexed: a service's server list is frozen, and for-of over a frozen array allocates its iterator per pick.
    for (let i = 0; i < n; i++) {
      const latency = (servers[i] as (typeof servers)[number]).latency;
      if (latency > 0 && latency < fastest) fastest = latency;
    }
    if (!Number.isFinite(fastest)) fastest = 1;
    const start = shared.next() % n;
    let best: (typeof servers)[number] | undefined;
    let bestScore = Number.POSITIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const s = servers[(start + i) % n] as (typeof servers)[number];
      if (!usable(s)) continue;
      const score = ((s.latency > 0 ? s.latency : fastest) * (s.inFlight + 1)) / s.weight;
      if (score < bestScore) {
        best = s;
        bestScore = score;
      }
    }
    return best;
  },
});
