/**
 * Request mirroring (nginx mirror, Envoy request_mirror_policies, Traefik
 * Mirroring): a share of requests is copied to a shadow service, fire and forget.
 * The copy leaves once the real request is on its way; its answer is read and
 * dropped. Bounded: at most `max_in_flight` copies at once per thread (more are
 * skipped, never queued), each given `timeout`, and only bodies Velocity already
 * holds in memory are copied (a streamed body is not: copying it would make the
 * real request wait for the shadow).
 */
import { z } from 'zod';
import { positiveDuration } from '../config-fields.ts';
import type { Middleware, MiddlewareContext } from './middleware.ts';
import { sendToService } from './subrequest.ts';

export const mirrorOptions = z.strictObject({
  service: z.string().regex(/^[a-zA-Z0-9][\w.-]*$/, 'a service name'),
  /** Share of requests copied, 0-100. */
  percent: z.number().min(0).max(100).default(100),
  max_in_flight: z.number().int().positive().default(16),
  timeout: positiveDuration().default(5_000),
});

export function mirror(o: z.output<typeof mirrorOptions>, context: MiddlewareContext): Middleware {
  let inFlight = 0;
  let skipped = 0;
  return {
    request(req) {
      if (o.percent < 100 && Math.random() * 100 >= o.percent) return undefined;
      req.onForward((sent) => {
        if (sent.body === undefined || inFlight >= o.max_in_flight) {
          skipped++;
          return;
        }
        inFlight++;
        void sendToService(context, o.service, req, { method: sent.method, path: sent.path, headers: [...sent.headers], body: sent.body, timeout: o.timeout, maxBody: 0 }).then(
          (answer) => {
            inFlight--;
            if (answer instanceof Error) context.warn(`mirror to ${o.service}: ${answer.message} (${skipped} copies skipped at the in-flight limit so far)`);
          },
        );
      });
      return undefined;
    },
  };
}
