/**
 * A service as one thread runs it: its servers (views over shared slots), its
 * policy, and the selection step every request goes through.
 */

import { performance } from 'node:perf_hooks';
import { customPolicy } from '../balancer/module-loader.ts';
import type { PickRequest, Policy, SharedPolicyState } from '../balancer/policy.ts';
import { policyFactory } from '../balancer/registry.ts';
import { epochMsAt } from '../clock.ts';
import type { ServiceConfig } from '../config/schema/service.ts';
import type { ServiceCells } from '../state/service-cells.ts';
import type { SharedState } from '../state/shared-state.ts';
import type { AttemptOutcome } from './attempt.ts';
import { isAvailable, isHealthy } from './availability.ts';
import { enterCircuit, leaveCircuit } from './circuit-breaker.ts';
import type { H2PoolOptions } from './h2-pool.ts';
import type { UpstreamPoolOptions } from './http1-pool.ts';
import { Lease, type LeaseOwner } from './lease.ts';
import { type OutcomeListeners, recordOutcome, type UpstreamChange } from './outcome.ts';
import { RetryBudget } from './retry-budget.ts';
import { UpstreamServer } from './server.ts';
import { StatusSet } from './status-set.ts';
import { upstreamTlsOptions } from './tls.ts';
import type { ServiceSpec } from './topology.ts';

/**
 * How long an idle server connection is kept: a minute, as nginx's upstream keepalive_timeout: traffic after a pause
 * of a few seconds finds its connections open instead of connecting again. A server that closes sooner says so in its
 * Keep-Alive header (Node, Apache) and the pool lets go a second before it (src/upstream/http1-pool.ts).
 */
const UPSTREAM_IDLE_MS = 60_000;

export type PolicyLoader = (config: ServiceConfig, shared: SharedPolicyState) => Policy;

/**
 * Built-in policies by name, and custom modules (loaded and checked with the config)
 * resolved from `moduleDir`, the instance's config folder. `onPolicyError` is told
 * when a custom policy misbehaves; round robin answers for it meanwhile.
 */
export function policyLoader(moduleDir: string, onPolicyError: (service: string, message: string) => void = () => {}): PolicyLoader {
  return (config, shared) => {
    const context = { shared, random: Math.random, now: Date.now };
    const policy = config.policy as { name: string; module?: string; options: Record<string, unknown> };
    if (policy.name === 'module' && policy.module) return customPolicy(policy.module, moduleDir, policy.options, context, (message) => onPolicyError(config.name, message));
    const factory = policyFactory(policy.name);
    if (!factory) throw new Error(`unknown policy "${policy.name}"`);
    return factory(policy.options, context);
  };
}

/** What a service tells the thread that runs it. */
export interface ServiceEvents {
  /** A circuit or ejection change made on this thread (logged and told to observers). */
  upstreamChange(change: UpstreamChange): void;
  /** An attempt failed its TLS handshake with a server. */
  tlsFailure(service: ServiceRuntime, server: UpstreamServer, error: Error): void;
}

export class ServiceRuntime implements LeaseOwner {
  readonly name: string;
  readonly slot: number;
  readonly config: ServiceConfig;
  readonly servers: readonly UpstreamServer[];
  readonly policy: Policy;
  readonly retryBudget: RetryBudget;
  /** The statuses a try is retried on (retries.retry_on), for the lookup each response head makes. */
  readonly retryStatuses: StatusSet;
  readonly cells: ServiceCells;
  private readonly events: ServiceEvents;
  private readonly onCircuitChange: Parameters<typeof enterCircuit>[3];
  private readonly outcomeListeners: OutcomeListeners;
  /** What `usable` checks during one acquire: set before each pick (picks are synchronous), so no closure per try. */
  private pickExclude: ReadonlySet<UpstreamServer> | undefined;
  private pickSkip: Set<UpstreamServer> | undefined;
  private pickNow = 0;
  /** Made on first use (a CA file is read then), kept for this runtime's life: the same object for every request. */
  private http1Options: UpstreamPoolOptions | undefined;
  private http2Options: H2PoolOptions | undefined;
  private readonly usable = (s: UpstreamServer): boolean => !this.pickExclude?.has(s) && !this.pickSkip?.has(s) && isAvailable(s, this.pickNow);

  constructor(spec: ServiceSpec, state: SharedState, thread: number, previous: ServiceRuntime | undefined, loadPolicy: PolicyLoader, events: ServiceEvents) {
    this.name = spec.name;
    this.slot = spec.slot;
    this.config = spec.config;
    this.events = events;
    this.cells = state.service(spec.slot);
    this.onCircuitChange = (change) => events.upstreamChange({ kind: 'circuit', service: spec.name, at: Date.now(), change });
    this.outcomeListeners = {
      circuit: this.onCircuitChange,
      ejection: (change) => events.upstreamChange({ kind: 'ejection', service: spec.name, at: Date.now(), change }),
    };
    const known = new Map(previous?.servers.map((s) => [s.slot, s]));
    const settings = {
      slowStartMs: spec.config.slow_start.window,
      halfOpenLimit: spec.config.circuit_breaker.enabled ? spec.config.circuit_breaker.half_open_requests : 1,
    };
    this.servers = Object.freeze(
      spec.servers.map((s) => {
        const existing = known.get(s.slot);
        return existing && existing.url === s.url ? existing.withSettings(settings, state, thread) : new UpstreamServer(s, state, thread, settings);
      }),
    );
    const samePolicy = previous && JSON.stringify(previous.config.policy) === JSON.stringify(spec.config.policy);
    this.policy = samePolicy ? previous.policy : loadPolicy(spec.config, this.policyState());
    this.retryBudget = new RetryBudget(this.cells, spec.config.retries.budget, spec.config.retries.min_retries_per_second);
    this.retryStatuses = new StatusSet(spec.config.retries.retry_on);
  }

  /**
   * The settings of this service's HTTP/1.1 server pools, asked on every request: a field, not a lookup by service
   * (a WeakMap lookup per request showed in perf). A reload makes a new runtime, and so new options: new pools.
   */
  poolOptions(): UpstreamPoolOptions {
    this.http1Options ??= { connectTimeout: this.config.timeouts.connect, keepAliveTimeout: UPSTREAM_IDLE_MS, tls: upstreamTlsOptions(this.config.tls) };
    return this.http1Options;
  }

  /** The same for its HTTP/2 servers' sessions. */
  h2Options(): H2PoolOptions {
    this.http2Options ??= { connectTimeout: this.config.timeouts.connect, sessions: this.config.http2_sessions, tls: upstreamTlsOptions(this.config.tls) };
    return this.http2Options;
  }

  private policyState(): SharedPolicyState {
    const cells = this.cells;
    // Policies are only ever handed this service's servers.
    return {
      next: () => cells.nextCounter(),
      locked: (fn) => cells.locked(fn),
      get: (server, c) => (server as UpstreamServer).policyCell(c),
      set: (server, c, value) => (server as UpstreamServer).setPolicyCell(c, value),
    };
  }

  /**
   * Picks a usable server not in `exclude` and counts the request against it.
   * Undefined when none can take it now.
   */
  acquire(request: PickRequest, exclude: ReadonlySet<UpstreamServer> | undefined): Lease | undefined {
    // One clock read per try, for the pick's epoch ms (epochMsAt, src/clock.ts: less than Date.now(), a call into V8's runtime) and the lease's start.
    const started = performance.now();
    const now = epochMsAt(started);
    // An empty set (a first try's) excludes nothing: not asked per server.
    this.pickExclude = exclude !== undefined && exclude.size > 0 ? exclude : undefined;
    this.pickSkip = undefined;
    this.pickNow = now;
    for (let tries = 0; tries <= this.servers.length; tries++) {
      const server = this.policy.pick(this.servers, request, this.usable);
      if (!server) return undefined;
      if (server.tryAcquire()) {
        if (enterCircuit(server, now, this.config.circuit_breaker, this.onCircuitChange)) return new Lease(this, server, started, now);
        server.release();
      }
      // Another thread took its last connection between the check and the count.
      this.pickSkip ??= new Set();
      this.pickSkip.add(server);
    }
    return undefined;
  }

  /** Counts the request against this particular server (sticky sessions); undefined when it cannot take it now. */
  acquireSpecific(server: UpstreamServer): Lease | undefined {
    const started = performance.now();
    const now = epochMsAt(started);
    if (!isAvailable(server, now) || !server.tryAcquire()) return undefined;
    if (enterCircuit(server, now, this.config.circuit_breaker, this.onCircuitChange)) return new Lease(this, server, started, now);
    server.release();
    return undefined;
  }

  recordOutcome(server: UpstreamServer, outcome: AttemptOutcome, latencyMs: number, now: number): void {
    recordOutcome(this, server, outcome, latencyMs, now, this.outcomeListeners);
    if (outcome.kind === 'failed' && outcome.code === 'UPSTREAM_TLS_FAILED') this.events.tlsFailure(this, server, outcome.error);
  }

  abandon(server: UpstreamServer): void {
    leaveCircuit(server);
  }

  /** Whether some healthy server (not excluded) exists, full or not. */
  hasHealthyServer(exclude?: ReadonlySet<UpstreamServer>): boolean {
    const now = Date.now();
    const servers = this.servers;
    // Indexed: the list is frozen, and for-of over a frozen array allocates its iterator (TurboFan cannot elide it).
    for (let i = 0; i < servers.length; i++) if (!exclude?.has(servers[i] as UpstreamServer) && isHealthy(servers[i] as UpstreamServer, now)) return true;
    return false;
  }

  /** Whether some server other than `exclude` could take a request now (asked on every request: no closure). */
  hasAvailableServer(exclude?: ReadonlySet<UpstreamServer>, now = Date.now()): boolean {
    const servers = this.servers;
    for (let i = 0; i < servers.length; i++) if (!exclude?.has(servers[i] as UpstreamServer) && isAvailable(servers[i] as UpstreamServer, now)) return true;
    return false;
  }

  /** Runs `fn` holding this service's spin lock (shared by every thread): e.g. "count the ejected servers, then eject". */
  locked<T>(fn: () => T): T {
    return this.cells.locked(fn);
  }

  /** Wakes requests queued for this service on any thread: a server freed capacity. */
  signalRelease(): void {
    this.cells.signalRelease();
  }
}
