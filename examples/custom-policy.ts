/**
 * A custom balancing policy: `percent`% of requests go to the canary server, the rest
 * round-robin over the others. Load it with
 *   policy: { module: ./custom-policy.ts, options: { canary: canary-1, percent: 10 } }
 *
 * Velocity runs on Node 24, which runs TypeScript modules as they are (erasable syntax
 * only: no enums, namespaces or parameter properties); a .js module works the same.
 * The default export (or `createPolicy`) is a factory called once per service and
 * config with the policy's `options` and a context: `shared` (a counter, a lock and
 * two integer cells per server, the same on every thread), `random` and `now`.
 * A policy only selects: it is given the service's servers in a stable order, the
 * request (clientIp, method, url, header(), cookie()) and a `usable(server)` check,
 * and returns one usable server, or undefined when none is usable.
 */

// In your own project: import type { PolicyFactory } from 'velocity-lb';
import type { PolicyFactory } from '../src/index.ts';

const canaryPolicy: PolicyFactory = (options, { shared, random }) => {
  const canaryId = String(options.canary ?? 'canary');
  const percent = Number(options.percent ?? 10);
  // Thrown here, this is a config error naming the module, with line and column.
  if (!(percent >= 0 && percent <= 100)) throw new Error('percent must be between 0 and 100');
  return {
    pick(servers, _request, usable) {
      const canary = servers.find((s) => s.id === canaryId);
      if (canary && usable(canary) && random() * 100 < percent) return canary;
      const others = servers.filter((s) => s !== canary && usable(s));
      if (others.length === 0) return canary && usable(canary) ? canary : undefined;
      return others[shared.next() % others.length];
    },
  };
};

export default canaryPolicy;
