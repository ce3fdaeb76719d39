/**
 * The one check every policy and the queue use to decide whether a server may take
 * a request now: enabled, healthy by active checks, not ejected by passive health,
 * circuit not open, and below its connection limit.
 */
import { S, SF } from '../runtime/shared-state.ts';
import { circuitAdmits } from './circuit-breaker.ts';
import { ADMIN_ENABLED, type UpstreamServer } from './server.ts';

export function isAvailable(server: UpstreamServer, now: number): boolean {
  if (server.int(S.ADMIN) !== ADMIN_ENABLED) return false;
  if (server.int(S.ACTIVE_UP) !== 1) return false;
  if (now < server.float(SF.EJECTED_UNTIL)) return false;
  if (!circuitAdmits(server, now, server.halfOpenLimit)) return false;
  const max = server.maxConnections;
  return max === 0 || server.inFlight < max;
}

/** Healthy in every sense but capacity: a request could wait for it in the queue. */
export function isHealthy(server: UpstreamServer, now: number): boolean {
  return server.int(S.ADMIN) === ADMIN_ENABLED && server.int(S.ACTIVE_UP) === 1 && now >= server.float(SF.EJECTED_UNTIL) && circuitAdmits(server, now, server.halfOpenLimit);
}
