/**
 * The shared machinery of the hash policies: a ring per server set (rebuilt when
 * the set or a configured weight changes), the request key from the policy's
 * `keyOf`, and a fallback policy for requests without a key (no header, no cookie).
 */
import { z } from 'zod';
import { HashRing } from './hash-ring.ts';
import type { BalancedServer, PickRequest, Policy, PolicyContext, PolicyFactory } from './policy.ts';

export const fallbackOption = z.string().default('round-robin');

/** Configured weights, not slow-start ramps: a ramping server must not move keys around. */
const ringWeight = (s: BalancedServer): number => s.configuredWeight ?? s.weight;

export function hashPolicy(
  keyOf: (request: PickRequest, options: Record<string, unknown>) => string | undefined,
  fallbackFactory: (name: string) => PolicyFactory | undefined,
): PolicyFactory {
  return (options, context: PolicyContext): Policy => {
    const fallback = fallbackFactory(String(options.fallback ?? 'round-robin'))?.({}, context);
    let ring: HashRing<BalancedServer> | undefined;
    let ringServers: readonly BalancedServer[] | undefined;
    let ringWeights: number[] = [];
    // The server list is a new array whenever the topology changes; weights can change in place (admin API).
    const current = (servers: readonly BalancedServer[]): HashRing<BalancedServer> => {
      if (!ring || servers !== ringServers || servers.some((s, i) => ringWeight(s) !== ringWeights[i])) {
        ring = new HashRing(servers, ringWeight);
        ringServers = servers;
        ringWeights = servers.map(ringWeight);
      }
      return ring;
    };
    return {
      pick(servers, request, usable) {
        const key = keyOf(request, options);
        if (key === undefined) return fallback?.pick(servers, request, usable);
        return current(servers).lookup(key, usable as (s: BalancedServer) => boolean) as (typeof servers)[number] | undefined;
      },
    };
  };
}
