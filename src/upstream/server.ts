/**
 * A server as the data path sees it: its fixed identity, plus a view of the live
 * state kept in shared memory (so every thread reads the same numbers).
 */
import type { BalancedServer } from '../balancer/policy.ts';
import { S, SF, type SharedState, withSpinLock } from '../runtime/shared-state.ts';

/** How fast an old latency observation fades (peak EWMA time constant). */
export const LATENCY_DECAY_MS = 10_000;

export const ADMIN_ENABLED = 0;
export const ADMIN_DRAINING = 1;
export const ADMIN_DISABLED = 2;
export const ADMIN_STATES = ['enabled', 'draining', 'disabled'] as const;
export type AdminState = (typeof ADMIN_STATES)[number];

export const CIRCUIT_CLOSED = 0;
export const CIRCUIT_OPEN = 1;
export const CIRCUIT_HALF_OPEN = 2;
export const CIRCUIT_STATES = ['closed', 'open', 'half-open'] as const;

/** The plain-data description of a server that crosses threads. */
export interface ServerSpec {
  id: string;
  url: string;
  slot: number;
  /** Spoken to in HTTP/2: h2c:// servers, and https:// ones with `http2: true`. */
  http2?: boolean;
}

export class UpstreamServer implements BalancedServer {
  readonly id: string;
  readonly url: string;
  readonly slot: number;
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  readonly http2: boolean;
  private readonly ints: Int32Array;
  private readonly floats: Float64Array;
  private readonly i: number;
  private readonly f: number;
  private readonly threadCell: number;
  /** Slow-start ramp length, set by the service; 0 = none. */
  slowStartMs = 0;
  /** Trial requests a half-open circuit admits, set by the service. */
  halfOpenLimit = 1;

  constructor(spec: ServerSpec, state: SharedState, thread: number) {
    this.id = spec.id;
    this.url = spec.url;
    this.slot = spec.slot;
    const u = new URL(spec.url);
    this.tls = u.protocol === 'https:';
    this.http2 = spec.http2 === true || u.protocol === 'h2c:';
    this.host = u.hostname.replace(/^\[|\]$/g, '');
    this.port = u.port ? Number(u.port) : this.tls ? 443 : 80;
    this.ints = state.serverInts;
    this.floats = state.serverFloats;
    this.i = state.serverIndex(spec.slot, 0);
    this.f = state.serverFloatIndex(spec.slot, 0);
    this.threadCell = thread * state.serverCapacity + spec.slot;
    this.threadInFlight = state.threadInFlight;
  }

  private readonly threadInFlight: Int32Array;

  int(field: number): number {
    return Atomics.load(this.ints, this.i + field);
  }

  setInt(field: number, value: number): void {
    Atomics.store(this.ints, this.i + field, value);
  }

  addInt(field: number, delta: number): number {
    return Atomics.add(this.ints, this.i + field, delta);
  }

  casInt(field: number, expected: number, value: number): boolean {
    return Atomics.compareExchange(this.ints, this.i + field, expected, value) === expected;
  }

  /** Runs `fn` holding this server's spin lock: state changes that write several cells (circuit, ejection) happen whole. */
  locked<T>(fn: () => T): T {
    return withSpinLock(this.ints, this.i + S.LOCK, fn);
  }

  float(field: number): number {
    return this.floats[this.f + field] as number;
  }

  setFloat(field: number, value: number): void {
    this.floats[this.f + field] = value;
  }

  get inFlight(): number {
    return Atomics.load(this.ints, this.i + S.IN_FLIGHT);
  }

  get configuredWeight(): number {
    return Atomics.load(this.ints, this.i + S.WEIGHT);
  }

  get maxConnections(): number {
    return Atomics.load(this.ints, this.i + S.MAX_CONNECTIONS);
  }

  get adminState(): AdminState {
    return ADMIN_STATES[this.int(S.ADMIN)] ?? 'enabled';
  }

  get activeUp(): boolean {
    return this.int(S.ACTIVE_UP) === 1;
  }

  /**
   * Peak-EWMA latency in ms, decayed by the time since the last sample (as Finagle
   * does on read): a server that got slow and then no traffic looks faster as time
   * passes, so it is probed again instead of being shunned forever.
   */
  get latency(): number {
    const value = this.float(SF.EWMA);
    if (value === 0) return 0;
    return value * Math.exp(-Math.max(0, Date.now() - this.float(SF.EWMA_AT)) / LATENCY_DECAY_MS);
  }

  /** Effective weight: ramps linearly from 10% over the slow-start window after the server became usable. */
  get weight(): number {
    const w = this.configuredWeight;
    if (this.slowStartMs <= 0) return w;
    const since = Date.now() - this.float(SF.USABLE_SINCE);
    if (since >= this.slowStartMs) return w;
    return w * Math.max(0.1, since / this.slowStartMs);
  }

  /** Counts a request against this server; false when it is at its connection limit. */
  tryAcquire(): boolean {
    const max = this.maxConnections;
    if (max > 0) {
      for (;;) {
        const current = Atomics.load(this.ints, this.i + S.IN_FLIGHT);
        if (current >= max) return false;
        if (Atomics.compareExchange(this.ints, this.i + S.IN_FLIGHT, current, current + 1) === current) break;
      }
    } else Atomics.add(this.ints, this.i + S.IN_FLIGHT, 1);
    Atomics.add(this.threadInFlight, this.threadCell, 1);
    return true;
  }

  release(): void {
    Atomics.sub(this.ints, this.i + S.IN_FLIGHT, 1);
    Atomics.sub(this.threadInFlight, this.threadCell, 1);
  }
}
