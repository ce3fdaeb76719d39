/**
 * Passive health (outlier detection): `consecutive_failures` in a row eject a
 * server for `base_ejection × 2^(times ejected before)`, capped at `max_ejection`,
 * unless that would take more than `max_ejected_percent` of the service out. A
 * server healthy for `max_ejection` after its last ejection starts over at the base.
 */
import type { ServiceConfig } from '../config/schema/service.ts';
import { S, SF } from '../runtime/shared-state.ts';
import type { UpstreamServer } from './server.ts';

export interface EjectionChange {
  server: string;
  ejectedForMs: number;
  ejections: number;
  reason: string;
}

export function recordPassive(
  servers: readonly UpstreamServer[],
  server: UpstreamServer,
  failed: boolean,
  now: number,
  config: ServiceConfig['passive_health'],
  onEject: (change: EjectionChange) => void,
): void {
  if (!config.enabled) return;
  if (!failed) {
    if (server.int(S.PASSIVE_FAILS) !== 0) server.setInt(S.PASSIVE_FAILS, 0);
    if (server.int(S.EJECTIONS) > 0 && now > server.float(SF.EJECTED_UNTIL) + config.max_ejection) server.setInt(S.EJECTIONS, 0);
    return;
  }
  const fails = server.addInt(S.PASSIVE_FAILS, 1) + 1;
  if (fails < config.consecutive_failures || now < server.float(SF.EJECTED_UNTIL)) return;
  const ejected = servers.reduce((n, s) => n + (s !== server && now < s.float(SF.EJECTED_UNTIL) ? 1 : 0), 0);
  if (((ejected + 1) / servers.length) * 100 > config.max_ejected_percent) return;
  // One thread ejects: the one that resets the failure count.
  if (!server.casInt(S.PASSIVE_FAILS, fails, 0)) return;
  const before = server.addInt(S.EJECTIONS, 1);
  const ejectedForMs = Math.min(config.max_ejection, config.base_ejection * 2 ** before);
  server.setFloat(SF.EJECTED_UNTIL, now + ejectedForMs);
  server.setFloat(SF.USABLE_SINCE, now + ejectedForMs);
  onEject({ server: server.id, ejectedForMs, ejections: before + 1, reason: `${fails} consecutive failures` });
}
