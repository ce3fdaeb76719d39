/**
 * A server as the data path sees it: its fixed identity, plus a view of the live
 * state kept in shared memory (so every thread reads the same numbers).
 */
import type { BalancedServer } from '../balancer/policy.ts';
import { ADMIN_STATES, type AdminState, ServerCells } from '../state/server-cells.ts';
import type { SharedState } from '../state/shared-state.ts';

/** How fast an old latency observation fades (peak EWMA time constant). */
export const LATENCY_DECAY_MS = 10_000;

/** What a server takes from its service's config. */
export interface ServerSettings {
  slowStartMs: number;
  halfOpenLimit: number;
}

/** The plain-data description of a server that crosses threads. */
export interface ServerSpec {
  id: string;
  url: string;
  slot: number;
  /** Spoken to in HTTP/2: h2c:// servers, and https:// ones with `http2: true`. */
  http2?: boolean;
}

export class UpstreamServer extends ServerCells implements BalancedServer {
  readonly id: string;
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  readonly http2: boolean;
  /** Slow-start ramp length, from the service's config; 0 = none. */
  readonly slowStartMs: number;
  /** Trial requests a half-open circuit admits, from the service's config. */
  readonly halfOpenLimit: number;

  constructor(spec: ServerSpec, state: SharedState, thread: number, settings: ServerSettings) {
    super(state, spec.slot, thread);
    this.id = spec.id;
    this.url = spec.url;
    const u = new URL(spec.url);
    this.tls = u.protocol === 'https:';
    this.http2 = spec.http2 === true || u.protocol === 'h2c:';
    this.host = u.hostname.replace(/^\[|\]$/g, '');
    this.port = u.port ? Number(u.port) : this.tls ? 443 : 80;
    this.slowStartMs = settings.slowStartMs;
    this.halfOpenLimit = settings.halfOpenLimit;
  }

  /** The same server and live state with a reloaded service's settings. */
  withSettings(settings: ServerSettings, state: SharedState, thread: number): UpstreamServer {
    if (settings.slowStartMs === this.slowStartMs && settings.halfOpenLimit === this.halfOpenLimit) return this;
    return new UpstreamServer({ id: this.id, url: this.url, slot: this.slot }, state, thread, settings);
  }

  get adminState(): AdminState {
    return ADMIN_STATES[this.admin] ?? 'enabled';
  }

  /**
   * Peak-EWMA latency in ms, decayed by the time since the last sample (as Finagle
   * does on read): a server that got slow and then no traffic looks faster as time
   * passes, so it is probed again instead of being shunned forever.
   */
  get latency(): number {
    const value = this.ewma;
    if (value === 0) return 0;
    return value * Math.exp(-Math.max(0, Date.now() - this.ewmaAt) / LATENCY_DECAY_MS);
  }

  /** Effective weight: ramps linearly from 10% over the slow-start window after the server became usable. */
  get weight(): number {
    const w = this.configuredWeight;
    if (this.slowStartMs <= 0) return w;
    const since = Date.now() - this.usableSince;
    if (since >= this.slowStartMs) return w;
    return w * Math.max(0.1, since / this.slowStartMs);
  }
}
