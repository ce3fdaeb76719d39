/**
 * Custom policies: `policy: { module: ./my-policy.ts, options: {...} }` names an ES
 * module (TypeScript or JavaScript, resolved against the config file's folder) whose
 * default export — or `createPolicy` export — is a PolicyFactory, the same interface
 * the built-ins use. Modules are loaded and checked when the config is loaded, so a
 * bad one is a config error, never a failure on the data path. A module is imported
 * once per process: a change to its code needs a restart.
 */
import { importFactory, type UserModuleKind, userModulePath } from '../user-module.ts';
import { localPolicyState } from './local-state.ts';
import type { BalancedServer, PickRequest, Policy, PolicyContext, PolicyFactory } from './policy.ts';
import { roundRobin } from './round-robin.ts';

const loaded = new Map<string, PolicyFactory>();

/** What a policy is asked in the load-time check: an empty service. */
const PROBE: PickRequest = { clientIp: '127.0.0.1', method: 'GET', url: '/', header: () => undefined, cookie: () => undefined };

const POLICY_MODULE: UserModuleKind = { noun: 'policy', exportName: 'createPolicy', signature: '(options, context) => { pick(servers, request, usable) }' };

/** Imports and checks a policy module; throws an Error saying what is wrong. */
export async function loadPolicyModule(specifier: string, baseDir: string, options: Record<string, unknown>): Promise<PolicyFactory> {
  const path = userModulePath(specifier, baseDir);
  const factory = loaded.get(path) ?? (await importFactory<PolicyFactory>(path, POLICY_MODULE));
  let policy: Policy;
  try {
    policy = factory(options, { shared: localPolicyState(), random: Math.random, now: Date.now });
  } catch (err) {
    throw new Error(`policy module ${path} failed to create a policy: ${(err as Error).message}`);
  }
  if (!policy || typeof (policy as { pick?: unknown }).pick !== 'function')
    throw new Error(`policy module ${path}: the factory must return an object with a pick(servers, request, usable) method`);
  let empty: unknown;
  try {
    empty = policy.pick([], PROBE, () => false);
  } catch (err) {
    throw new Error(`policy module ${path}: pick() threw on a service with no servers: ${(err as Error).message}`);
  }
  if (empty !== undefined) throw new Error(`policy module ${path}: pick() must return undefined when no server is usable`);
  loaded.set(path, factory);
  return factory;
}

/**
 * The policy a loaded module makes, as the data path runs it: when creating it or a
 * pick throws, or a pick returns anything but one of the usable servers it was
 * given, `report` is told (at most every 10 s) and round robin answers instead — a
 * buggy module costs balance, never a request or the process.
 */
export function customPolicy(specifier: string, baseDir: string, options: Record<string, unknown>, context: PolicyContext, report: (message: string) => void): Policy {
  const fallback = roundRobin({}, context);
  const path = userModulePath(specifier, baseDir);
  let lastReport = Number.NEGATIVE_INFINITY;
  let unreported = 0;
  const problem = (message: string) => {
    unreported++;
    const now = Date.now();
    if (now - lastReport < 10_000) return;
    report(`policy module ${path}: ${message}${unreported > 1 ? ` (${unreported} times since the last report)` : ''}; round robin answered instead`);
    lastReport = now;
    unreported = 0;
  };
  let policy: Policy;
  try {
    const factory = loaded.get(path);
    if (!factory) throw new Error('not loaded with the config');
    policy = factory(options, context);
  } catch (err) {
    problem(`cannot create the policy: ${(err as Error).message}`);
    return fallback;
  }
  return {
    pick<T extends BalancedServer>(servers: readonly T[], request: PickRequest, usable: (server: T) => boolean): T | undefined {
      let picked: T | undefined;
      try {
        picked = policy.pick(servers, request, usable);
      } catch (err) {
        problem(`pick() threw: ${(err as Error).message}`);
        return fallback.pick(servers, request, usable);
      }
      if (picked === undefined ? servers.some(usable) : !servers.includes(picked) || !usable(picked)) {
        problem(picked === undefined ? 'pick() returned no server while some were usable' : 'pick() returned a server that is not one of the usable servers given');
        return fallback.pick(servers, request, usable);
      }
      return picked;
    },
  };
}
