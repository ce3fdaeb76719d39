/**
 * The one check every policy and the queue use to decide whether a server may take
 * a request now: enabled, healthy by active checks, not ejected by passive health,
 * circuit not open, and below its connection limit.
 */

import { ADMIN_ENABLED } from '../state/server-cells.ts';
import { circuitAdmits } from './circuit-breaker.ts';
import type { UpstreamServer } from './server.ts';

export function isAvailable(server: UpstreamServer, now: number): boolean {
  if (server.admin !== ADMIN_ENABLED) return false;
  if (!server.activeUp) return false;
  if (now < server.ejectedUntil) return false;
  if (!circuitAdmits(server, now, server.halfOpenLimit)) return false;
  const max = server.maxConnections;
  return max === 0 || server.inFlight < max;
}

/** Healthy in every sense but capacity: a request could wait for it in the queue. */
export function isHealthy(server: UpstreamServer, now: number): boolean {
  return server.admin === ADMIN_ENABLED && server.activeUp && now >= server.ejectedUntil && circuitAdmits(server, now, server.halfOpenLimit);
}
