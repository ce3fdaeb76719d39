/**
 * A service as one thread runs it: its servers (views over shared slots), its
 * policy, and the selection step every request goes through.
 */

import { customPolicy } from '../balancer/module-loader.ts';
import type { PickRequest, Policy, SharedPolicyState } from '../balancer/policy.ts';
import { policyFactory } from '../balancer/registry.ts';
import type { ServiceConfig } from '../config/schema/service.ts';
import { S, type SharedState, V, withSpinLock } from '../runtime/shared-state.ts';
import { isAvailable, isHealthy } from './availability.ts';
import { type CircuitChange, enterCircuit } from './circuit-breaker.ts';
import { RetryBudget } from './retry-budget.ts';
import { UpstreamServer } from './server.ts';
import type { ServiceSpec } from './topology.ts';

/** Where custom policy modules are resolved from: the config file's folder (set at start, and in each thread). */
export const policyModuleBase = { dir: process.cwd() };

export type PolicyLoader = (config: ServiceConfig, shared: SharedPolicyState) => Policy;

/**
 * Built-in policies by name, and custom modules (loaded and checked with the config).
 * `onPolicyError` is told when a custom policy misbehaves; round robin answers for it meanwhile.
 */
export function policyLoader(onPolicyError: (service: string, message: string) => void = () => {}): PolicyLoader {
  return (config, shared) => {
    const context = { shared, random: Math.random, now: Date.now };
    const policy = config.policy as { name: string; module?: string; options: Record<string, unknown> };
    if (policy.name === 'module' && policy.module)
      return customPolicy(policy.module, policyModuleBase.dir, policy.options, context, (message) => onPolicyError(config.name, message));
    const factory = policyFactory(policy.name);
    if (!factory) throw new Error(`unknown policy "${policy.name}"`);
    return factory(policy.options, context);
  };
}

export class ServiceRuntime {
  readonly name: string;
  readonly slot: number;
  readonly config: ServiceConfig;
  readonly servers: readonly UpstreamServer[];
  readonly policy: Policy;
  readonly retryBudget: RetryBudget;
  private readonly ints: Int32Array;
  private readonly base: number;

  /** Where circuit changes made while selecting are reported (the data plane logs and forwards them). */
  onCircuitChange: (change: CircuitChange) => void = () => {};

  constructor(spec: ServiceSpec, state: SharedState, thread: number, previous: ServiceRuntime | undefined, loadPolicy: PolicyLoader) {
    this.name = spec.name;
    this.slot = spec.slot;
    this.config = spec.config;
    this.ints = state.serviceInts;
    this.base = state.serviceIndex(spec.slot, 0);
    const known = new Map(previous?.servers.map((s) => [s.slot, s]));
    this.servers = Object.freeze(
      spec.servers.map((s) => {
        const existing = known.get(s.slot);
        const server = existing && existing.url === s.url ? existing : new UpstreamServer(s, state, thread);
        server.slowStartMs = spec.config.slow_start.window;
        server.halfOpenLimit = spec.config.circuit_breaker.enabled ? spec.config.circuit_breaker.half_open_requests : 1;
        return server;
      }),
    );
    const samePolicy = previous && JSON.stringify(previous.config.policy) === JSON.stringify(spec.config.policy);
    this.policy = samePolicy ? previous.policy : loadPolicy(spec.config, this.policyState(state));
    this.retryBudget = new RetryBudget(state, spec.slot, spec.config.retries.budget, spec.config.retries.min_retries_per_second);
  }

  private policyState(state: SharedState): SharedPolicyState {
    const ints = this.ints;
    const counter = this.base + V.COUNTER;
    const cells = state.serverInts;
    const cell = (slot: number, c: 0 | 1) => state.serverIndex(slot, c === 0 ? S.POLICY_A : S.POLICY_B);
    return {
      next: () => Atomics.add(ints, counter, 1) & 0x7fffffff,
      locked: (fn) => this.locked(fn),
      get: (server, c) => Atomics.load(cells, cell(server.slot, c)),
      set: (server, c, value) => Atomics.store(cells, cell(server.slot, c), value),
    };
  }

  /**
   * Picks a usable server not in `exclude` and counts the request against it.
   * Undefined when none can take it now.
   */
  acquire(request: PickRequest, exclude: ReadonlySet<UpstreamServer> | undefined): UpstreamServer | undefined {
    const now = Date.now();
    let skip: Set<UpstreamServer> | undefined;
    for (let tries = 0; tries <= this.servers.length; tries++) {
      const usable = (s: UpstreamServer) => !exclude?.has(s) && !skip?.has(s) && isAvailable(s, now);
      const server = this.policy.pick(this.servers, request, usable);
      if (!server) return undefined;
      if (server.tryAcquire()) {
        if (enterCircuit(server, now, this.config.circuit_breaker, this.onCircuitChange)) return server;
        server.release();
      }
      // Another thread took its last connection between the check and the count.
      skip ??= new Set();
      skip.add(server);
    }
    return undefined;
  }

  /** Counts the request against this particular server (sticky sessions); false when it cannot take it now. */
  acquireSpecific(server: UpstreamServer): boolean {
    const now = Date.now();
    if (!isAvailable(server, now) || !server.tryAcquire()) return false;
    if (enterCircuit(server, now, this.config.circuit_breaker, this.onCircuitChange)) return true;
    server.release();
    return false;
  }

  /** Whether some healthy server (not excluded) exists, full or not. */
  hasHealthyServer(exclude?: ReadonlySet<UpstreamServer>): boolean {
    const now = Date.now();
    return this.servers.some((s) => !exclude?.has(s) && isHealthy(s, now));
  }

  /** Whether some server other than `exclude` could take a request now. */
  hasAvailableServer(exclude?: ReadonlySet<UpstreamServer>): boolean {
    const now = Date.now();
    return this.servers.some((s) => !exclude?.has(s) && isAvailable(s, now));
  }

  /** Runs `fn` holding this service's spin lock (shared by every thread): e.g. "count the ejected servers, then eject". */
  locked<T>(fn: () => T): T {
    return withSpinLock(this.ints, this.base + V.LOCK, fn);
  }

  /** Wakes requests queued for this service on any thread: a server freed capacity. */
  signalRelease(): void {
    Atomics.add(this.ints, this.base + V.RELEASES, 1);
    Atomics.notify(this.ints, this.base + V.RELEASES);
  }
}
