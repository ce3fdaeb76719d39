// A custom balancing policy: send `percent`% of requests to the canary server,
// the rest round-robin over the others. Load it with
//   policy: { module: ./custom-policy.js, options: { canary: "canary-1", percent: 10 } }
// A policy only selects: it is given the service's servers in a stable order and a
// `usable(server)` check, and returns one usable server or undefined.

/** @type {import('velocity-lb').PolicyFactory} */
export default function canaryPolicy(options, { shared, random }) {
  const canaryId = String(options.canary ?? 'canary');
  const percent = Number(options.percent ?? 10);
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
}
