/**
 * The shared machinery of the hash policies: a ring per server set (rebuilt when
 * the set or a weight changes), the request key from the policy's `keyOf`, and a
 * fallback policy for requests without a key (no header, no cookie).
 */
import { z } from 'zod';
import { HashRing } from './hash-ring.ts';
import type { BalancedServer, PickRequest, Policy, PolicyContext, PolicyFactory } from './policy.ts';

export const fallbackOption = z.string().default('round-robin');

export function hashPolicy(
  keyOf: (request: PickRequest, options: Record<string, unknown>) => string | undefined,
  fallbackFactory: (name: string) => PolicyFactory | undefined,
): PolicyFactory {
  return (options, context: PolicyContext): Policy => {
    const fallbackName = String(options.fallback ?? 'round-robin');
    const fallback = fallbackFactory(fallbackName)?.({}, context);
    let ring: HashRing<BalancedServer> | undefined;
    let signature = '';
    return {
      pick(servers, request, usable) {
        const key = keyOf(request, options);
        if (key === undefined) return fallback?.pick(servers, request, usable);
        // Configured weights, not slow-start ramps: a ramping server must not move keys around.
        const sig = servers.map((s) => `${s.id}:${(s as { configuredWeight?: number }).configuredWeight ?? s.weight}`).join(',');
        if (!ring || sig !== signature) {
          ring = new HashRing(servers, (s) => (s as { configuredWeight?: number }).configuredWeight ?? s.weight);
          signature = sig;
        }
        return ring.lookup(key, usable as (s: BalancedServer) => boolean) as (typeof servers)[number] | undefined;
      },
    };
  };
}
