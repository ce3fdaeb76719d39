/** Policy names → factories. One file per policy; this is the only list of them. */
import { z } from 'zod';
import { suggest } from '../suggest.ts';
import { fallbackOption, hashPolicy } from './consistent-hash.ts';
import { cookieHashOptions, cookieKey } from './cookie-hash.ts';
import { headerHashOptions, headerKey } from './header-hash.ts';
import { ipKey } from './ip-hash.ts';
import { leastConnections } from './least-connections.ts';
import { leastResponseTime } from './least-response-time.ts';
import type { PolicyFactory } from './policy.ts';
import { randomTwoChoices } from './random-two-choices.ts';
import { roundRobin } from './round-robin.ts';
import { urlHashOptions, urlKey } from './url-hash.ts';
import { weightedRoundRobin } from './weighted-round-robin.ts';

interface PolicyEntry {
  create: PolicyFactory;
  /** Validates the policy's own options (fields beside `name` in the config); none by default, so a stray key is an error. */
  options?: z.ZodType;
  /** One line for the README table. */
  summary: string;
}

/** A hash policy's `fallback` must name a policy that needs no key. */
const withFallback = (schema: z.ZodType) =>
  schema.refine(
    (o) => {
      const name = (o as { fallback?: string }).fallback ?? 'round-robin';
      return name in POLICIES && !name.endsWith('-hash');
    },
    {
      message: 'fallback must name a policy that needs no key (round-robin, weighted-round-robin, least-connections, random-two-choices, least-response-time)',
      path: ['fallback'],
    },
  );

const POLICIES: Record<string, PolicyEntry> = {
  'round-robin': { create: roundRobin, summary: 'each server in turn; weights ignored' },
  'weighted-round-robin': { create: weightedRoundRobin, summary: 'smooth weighted rotation (nginx interleaving)' },
  'least-connections': { create: leastConnections, summary: 'fewest in-flight requests per weight, ties in rotation' },
  'ip-hash': { create: hashPolicy(ipKey, policyFactory), options: withFallback(z.strictObject({ fallback: fallbackOption })), summary: 'consistent hash of the client IP' },
  'url-hash': { create: hashPolicy(urlKey, policyFactory), options: withFallback(urlHashOptions), summary: 'consistent hash of the path (and query with query: true)' },
  'header-hash': { create: hashPolicy(headerKey, policyFactory), options: withFallback(headerHashOptions), summary: 'consistent hash of a header; fallback policy without it' },
  'cookie-hash': { create: hashPolicy(cookieKey, policyFactory), options: withFallback(cookieHashOptions), summary: 'consistent hash of a cookie; fallback policy without it' },
  'random-two-choices': { create: randomTwoChoices, summary: 'two random servers (weighted), the less loaded wins' },
  'least-response-time': { create: leastResponseTime, summary: 'lowest peak-EWMA latency × (in-flight + 1)' },
};

export function policyNames(): string[] {
  return Object.keys(POLICIES);
}

const NO_OPTIONS = z.strictObject({});

export function policyOptionsSchema(name: string): z.ZodType | undefined {
  const entry = POLICIES[name];
  return entry && (entry.options ?? NO_OPTIONS);
}

/** What is wrong with a policy's options (paths relative to the policy); an unknown key gets a "did you mean". */
export function policyOptionProblems(name: string, options: Record<string, unknown>): z.core.$ZodIssue[] {
  const schema = policyOptionsSchema(name);
  const result = schema?.safeParse(options);
  if (!result || result.success) return [];
  const known = schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
  return result.error.issues.flatMap((issue): z.core.$ZodIssue[] => {
    if (issue.code !== 'unrecognized_keys') return [issue];
    return issue.keys.map((key) => {
      const hint = suggest(key, known);
      const expected = hint ? ` (did you mean "${hint}"?)` : known.length ? `; ${name} takes ${known.join(', ')}` : `; ${name} takes no options`;
      return { code: 'custom', path: [key], input: options[key], message: `unknown field "${key}"${expected}` };
    });
  });
}

export function policyFactory(name: string): PolicyFactory | undefined {
  // Hoisted: the hash policies look their fallback up here.
  return POLICIES[name]?.create;
}
