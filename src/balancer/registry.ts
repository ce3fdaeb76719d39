/** Policy names → factories. One file per policy; this is the only list of them. */
import type { z } from 'zod';
import { leastConnections } from './least-connections.ts';
import type { PolicyFactory } from './policy.ts';
import { roundRobin } from './round-robin.ts';
import { weightedRoundRobin } from './weighted-round-robin.ts';

interface PolicyEntry {
  create: PolicyFactory;
  /** Validates the policy's own options (fields beside `name` in the config). */
  options?: z.ZodType;
  /** One line for the README table. */
  summary: string;
}

const POLICIES: Record<string, PolicyEntry> = {
  'round-robin': { create: roundRobin, summary: 'each server in turn; weights ignored' },
  'weighted-round-robin': { create: weightedRoundRobin, summary: 'smooth weighted rotation (nginx interleaving)' },
  'least-connections': { create: leastConnections, summary: 'fewest in-flight requests per weight, ties in rotation' },
};

export function policyNames(): string[] {
  return Object.keys(POLICIES);
}

export function policyOptionsSchema(name: string): z.ZodType | undefined {
  return POLICIES[name]?.options;
}

export function policyFactory(name: string): PolicyFactory | undefined {
  return POLICIES[name]?.create;
}
