/**
 * Whether Velocity should get traffic: the check behind /readyz on the admin listener and on
 * listener paths. A service is ready when one of its servers is healthy by every check
 * (a server at its connection limit still counts: requests can queue for it).
 */
import type { ProbesConfig } from '../config/schema/probes.ts';
import { isHealthy } from './availability.ts';
import type { ServiceRuntime } from './service.ts';

export interface Readiness {
  ready: boolean;
  /** What is missing, one line each; empty when ready. */
  reasons: string[];
}

export function readiness(services: Iterable<ServiceRuntime>, when: ProbesConfig['ready_when'], state: { draining: boolean; listening: boolean }, now = Date.now()): Readiness {
  const reasons: string[] = [];
  if (state.draining) reasons.push('shutting down');
  if (!state.listening) reasons.push('no listener is open');
  if (when !== 'listening') {
    let down = 0;
    let total = 0;
    for (const service of services) {
      total++;
      if (!service.servers.some((s) => isHealthy(s, now))) down++;
    }
    // Counts, not names: the probes answer without a token, and service names are the operator's data.
    if (when === 'every-service' && down > 0) reasons.push(`no available server in ${down} of ${total} services`);
    if (when === 'any-service' && down === total) reasons.push('no service has an available server');
  }
  return { ready: reasons.length === 0, reasons };
}
