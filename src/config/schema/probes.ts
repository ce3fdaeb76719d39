/** Liveness and readiness probes for what runs in front of Velocity (Kubernetes, cloud balancers, keepalived). */
import { z } from 'zod';
import { duration, requestPath } from '../../config-fields.ts';

export const probesSchema = z.strictObject({
  /**
   * What /readyz needs besides a loaded config and open listeners: an available server in every
   * service (default), in at least one, or nothing more (`listening`).
   */
  ready_when: z.enum(['every-service', 'any-service', 'listening'], { error: 'expected every-service, any-service or listening' }).default('every-service'),
  /**
   * On SIGTERM, how long /readyz answers 503 while Velocity still serves, so a balancer in front
   * stops sending before the listeners close; then in-flight requests drain (`shutdown_timeout`).
   */
  shutdown_grace: duration().default(0),
  /** Also answer the probes on every HTTP and HTTPS listener at these paths (for balancers that only reach the traffic port). */
  listener_paths: z.strictObject({ live: requestPath().optional(), ready: requestPath().optional() }).prefault({}),
});

export type ProbesConfig = z.output<typeof probesSchema>;
