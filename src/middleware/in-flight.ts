/**
 * A limit on requests in progress through this route (Traefik InFlightReq, nginx
 * limit_conn): past `max` the request is refused with 429 at once. Counted per
 * thread; a reload starts a new count.
 */
import { z } from 'zod';
import type { Middleware, Reply } from './middleware.ts';

export const inFlightOptions = z.strictObject({
  max: z.number({ error: 'expected a whole number' }).int().positive(),
  /** Count per client address instead of for everyone together. */
  per_client: z.boolean().default(false),
});

const BUSY: Reply = {
  status: 429,
  code: 'IN_FLIGHT_LIMIT',
  headers: ['content-type', 'text/plain; charset=utf-8', 'retry-after', '1'],
  body: '429 Too many requests in progress\n',
};

export function inFlight(o: z.output<typeof inFlightOptions>): Middleware {
  const counts = new Map<string, number>();
  return {
    request(req) {
      const key = o.per_client ? req.clientIp : '';
      const now = counts.get(key) ?? 0;
      if (now >= o.max) return BUSY;
      counts.set(key, now + 1);
      req.onDone(() => {
        const left = (counts.get(key) ?? 1) - 1;
        if (left <= 0) counts.delete(key);
        else counts.set(key, left);
      });
      return undefined;
    },
  };
}
