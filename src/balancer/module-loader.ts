/**
 * Custom policies: `policy: { module: ./my-policy.js, options: {...} }` names an ES
 * module (resolved against the config file's folder) whose default export — or
 * `createPolicy` export — is a PolicyFactory, the same interface the built-ins use.
 * Modules are loaded and checked when the config is loaded, so a bad one is a
 * config error, never a failure on the data path.
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { localPolicyState } from './local-state.ts';
import type { PolicyFactory } from './policy.ts';

const loaded = new Map<string, PolicyFactory>();

export function resolvePolicyModule(specifier: string, baseDir: string): string {
  return isAbsolute(specifier) ? specifier : resolve(baseDir, specifier);
}

/** Imports and checks a policy module; throws an Error saying what is wrong. */
export async function loadPolicyModule(specifier: string, baseDir: string, options: Record<string, unknown>): Promise<PolicyFactory> {
  const path = resolvePolicyModule(specifier, baseDir);
  let factory = loaded.get(path);
  if (!factory) {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`cannot load policy module ${path}: ${(err as Error).message.split('\n')[0]}`);
    }
    const candidate = mod.default ?? mod.createPolicy;
    if (typeof candidate !== 'function')
      throw new Error(`policy module ${path} must export a factory function as default (or createPolicy): (options, context) => { pick(servers, request, usable) }`);
    factory = candidate as PolicyFactory;
  }
  let policy: unknown;
  try {
    policy = factory(options, { shared: localPolicyState(), random: Math.random, now: Date.now });
  } catch (err) {
    throw new Error(`policy module ${path} failed to create a policy: ${(err as Error).message}`);
  }
  if (!policy || typeof (policy as { pick?: unknown }).pick !== 'function')
    throw new Error(`policy module ${path}: the factory must return an object with a pick(servers, request, usable) method`);
  loaded.set(path, factory);
  return factory;
}

/** A factory loaded before (by loadPolicyModule). */
export function loadedPolicyModule(specifier: string, baseDir: string): PolicyFactory | undefined {
  return loaded.get(resolvePolicyModule(specifier, baseDir));
}
