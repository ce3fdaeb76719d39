/**
 * Passive health (outlier detection): `consecutive_failures` in a row eject a
 * server for `base_ejection × 2^(times ejected before)`, capped at `max_ejection`,
 * unless that would take more than `max_ejected_percent` of the service out. A
 * server healthy for `max_ejection` after its last ejection starts over at the base.
 */

import { cappedBackoff } from '../backoff.ts';
import type { ServiceConfig } from '../config/schema/service.ts';
import type { UpstreamServer } from './server.ts';

export type PassiveHealthConfig = ServiceConfig['passive_health'];

export interface EjectionChange {
  server: string;
  ejectedForMs: number;
  ejections: number;
  reason: string;
}

/**
 * The servers among which `max_ejected_percent` holds, and the lock (the service's)
 * that makes "count the ejected ones, then eject" one step on every thread.
 */
export interface EjectionScope {
  readonly servers: readonly UpstreamServer[];
  locked<T>(fn: () => T): T;
}

/** How long the next ejection lasts after `ejectedBefore` earlier ones. Pure. */
export function ejectionDuration(config: PassiveHealthConfig, ejectedBefore: number): number {
  return cappedBackoff(config.base_ejection, config.max_ejection, ejectedBefore);
}

/** Whether one more ejection keeps the ejected share within `max_ejected_percent`. Pure. */
export function mayEject(alreadyEjected: number, servers: number, maxPercent: number): boolean {
  return ((alreadyEjected + 1) / servers) * 100 <= maxPercent;
}

export function recordPassive(
  scope: EjectionScope,
  server: UpstreamServer,
  failed: boolean,
  now: number,
  config: PassiveHealthConfig,
  onEject: (change: EjectionChange) => void,
): void {
  if (!config.enabled) return;
  if (!failed) {
    if (server.passiveFailures !== 0) server.passiveFailures = 0;
    if (server.ejections > 0 && now > server.ejectedUntil + config.max_ejection) server.ejections = 0;
    return;
  }
  const fails = server.addPassiveFailure();
  // Answers to requests sent before an ejection do not extend it.
  if (fails < config.consecutive_failures || now < server.ejectedUntil) return;
  eject(scope, server, fails, now, config, onEject);
}

/**
 * Ejects the server if it still should be when the lock is taken. A function of its own: a closure that captures
 * recordPassive's variables would allocate their context on every request, failed or not.
 */
function eject(scope: EjectionScope, server: UpstreamServer, fails: number, now: number, config: PassiveHealthConfig, onEject: (change: EjectionChange) => void): void {
  const change = scope.locked(() => {
    if (server.passiveFailures < config.consecutive_failures || now < server.ejectedUntil) return undefined;
    let ejected = 0;
    for (const s of scope.servers) if (s !== server && now < s.ejectedUntil) ejected++;
    // Over the limit the server stays in and its failures keep counting, so it goes as soon as another returns.
    if (!mayEject(ejected, scope.servers.length, config.max_ejected_percent)) return undefined;
    const before = server.ejections;
    const ejectedForMs = ejectionDuration(config, before);
    server.ejections = before + 1;
    server.passiveFailures = 0;
    // Slow start ramps from the end of the ejection.
    server.usableSince = now + ejectedForMs;
    server.ejectedUntil = now + ejectedForMs;
    return { server: server.id, ejectedForMs, ejections: before + 1, reason: `${fails} consecutive failures` };
  });
  if (change) onEject(change);
}
