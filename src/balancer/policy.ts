/**
 * The interface every balancing policy implements. A policy only selects: it never
 * changes health, counts or weights. It is told which servers are usable.
 */

/** What a policy may read of a server. */
export interface BalancedServer {
  /** Stable identity (name or host:port): the key for hashing and sticky cookies. */
  readonly id: string;
  /** Effective weight now (configured weight, ramped during slow start). */
  readonly weight: number;
  /**
   * The weight as configured, without the slow-start ramp: hash policies place servers
   * by it, so a ramping server does not move keys around. Absent = `weight`.
   */
  readonly configuredWeight?: number;
  /** Requests in flight on this server, across all threads. */
  readonly inFlight: number;
  /** Peak-EWMA latency in ms (0 until measured). */
  readonly latency: number;
  /** Index into SharedPolicyState cells. */
  readonly slot: number;
}

/** What a policy may read of the request being balanced. */
export interface PickRequest {
  readonly clientIp: string;
  readonly method: string;
  /** Path with query string, as received. */
  readonly url: string;
  header(name: string): string | undefined;
  cookie(name: string): string | undefined;
}

/** State a policy keeps across picks, shared by every thread. */
export interface SharedPolicyState {
  /** An atomic counter for this service: returns the value before incrementing. */
  next(): number;
  /** Runs fn while holding this service's lock (for multi-cell updates). */
  locked<T>(fn: () => T): T;
  /** Two integer cells per server (0 or 1) for the policy's own bookkeeping. */
  get(server: BalancedServer, cell: 0 | 1): number;
  set(server: BalancedServer, cell: 0 | 1, value: number): void;
}

export interface PolicyContext {
  readonly shared: SharedPolicyState;
  /** Injected so tests are deterministic. */
  readonly random: () => number;
  readonly now: () => number;
}

export interface Policy {
  /**
   * Chooses one of `servers` for which `usable(server)` is true, or undefined when
   * none is. `servers` is the service's whole set in a stable order, so hashing
   * policies can fall through to the next choice deterministically.
   */
  pick<T extends BalancedServer>(servers: readonly T[], request: PickRequest, usable: (server: T) => boolean): T | undefined;
}

export type PolicyFactory = (options: Record<string, unknown>, context: PolicyContext) => Policy;
