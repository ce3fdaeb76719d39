/**
 * Power of two choices: two usable servers drawn at random (weighted), the one
 * with fewer in-flight requests per weight wins. Nearly as good as least
 * connections, with no shared rotation state and no herd on one idle server.
 */
import type { Policy, PolicyFactory } from './policy.ts';

export const randomTwoChoices: PolicyFactory = (_options, { random }): Policy => ({
  pick(servers, _request, usable) {
    const candidates = servers.filter(usable);
    if (candidates.length <= 1) return candidates[0];
    const total = candidates.reduce((sum, s) => sum + s.weight, 0);
    const draw = (exclude?: (typeof candidates)[number]) => {
      const pool = exclude ? total - exclude.weight : total;
      let r = random() * pool;
      for (const s of candidates) {
        if (s === exclude) continue;
        r -= s.weight;
        if (r < 0) return s;
      }
      return candidates.find((s) => s !== exclude) as (typeof candidates)[number];
    };
    const a = draw();
    const b = draw(a);
    return b.inFlight / b.weight < a.inFlight / a.weight ? b : a;
  },
});
