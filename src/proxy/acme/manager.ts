/**
 * The ACME control loop of one instance (main thread): for every managed name,
 * obtain a certificate when storage has none, renew it at two thirds of its
 * lifetime, retry failures with jittered exponential backoff, stay under the
 * order rate, and take the storage lock around every order so instances sharing
 * storage order a name once (the others find the new certificate and serve it).
 * Serving threads learn about new certificates from storage (served.ts).
 */
import { cappedBackoff } from '../../backoff.ts';
import type { AcmeConfig } from '../../config/schema/acme.ts';
import type { Logger } from '../../observe/logger.ts';
import { ACME_ERROR_KINDS, AcmeError, type AcmeErrorKind, AcmeIssuer } from './issuer.ts';
import { type AcmeStorage, joinBundle, keys, LockTimeoutError, readCertificate, type StoredCertificate } from './storage.ts';

/** How long a name the ask endpoint refused is refused without asking again. */
const REFUSAL_MEMORY_MS = 60_000;
/** Longest single timer: Node's limit is 2^31-1 ms; waking daily also notices certificates another instance renewed. */
const MAX_SLEEP_MS = 86_400_000;
/** Warn when a certificate's remaining life falls under this share of its lifetime (half its renewal window)… */
const WARN_FRACTION = 1 / 6;
/** …or under the 30 days file certificates are warned at, whichever is less. */
const WARN_MAX_MS = 30 * 86_400_000;

export interface CertificateStatus {
  name: string;
  /** `valid` (served), `pending` (placeholder served, being obtained), `expired`. */
  status: 'valid' | 'pending' | 'expired';
  issuer: string | null;
  serial: string | null;
  not_before: string | null;
  not_after: string | null;
  /** When the next attempt (renewal or retry) is due. */
  renew_at: string | null;
  last_attempt: string | null;
  last_renewal: string | null;
  last_error: { kind: AcmeErrorKind; message: string; at: string } | null;
  failures: number;
  /** The CA directory the certificate comes from. */
  ca: string;
  storage: string;
}

interface NameState {
  name: string;
  cert: StoredCertificate | undefined;
  lastAttempt: number | undefined;
  lastRenewal: number | undefined;
  lastError: { kind: AcmeErrorKind; message: string; at: number } | undefined;
  failures: number;
  /** A `renew now` not yet done: its retries renew whatever the certificate's age. */
  forced: boolean;
  nextAt: number | undefined;
  timer: NodeJS.Timeout | undefined;
  running: Promise<void> | undefined;
}

/** Counters the metrics endpoint reads. */
export interface AcmeCounters {
  orders: { success: number; failure: number };
  errors: Record<AcmeErrorKind, number>;
  /** Orders skipped because another instance sharing storage had just renewed the name. */
  shared: number;
}

/** When a certificate is due: two thirds into its lifetime (Caddy and certbot renew with a third left). */
export function renewalTime(cert: { notBefore: number; notAfter: number }): number {
  return cert.notBefore + ((cert.notAfter - cert.notBefore) * 2) / 3;
}

export function expiryWarningDue(cert: { notBefore: number; notAfter: number }, now: number): boolean {
  const left = cert.notAfter - now;
  return left <= Math.min(WARN_MAX_MS, (cert.notAfter - cert.notBefore) * WARN_FRACTION);
}

const times = (cert: StoredCertificate) => ({ notBefore: Date.parse(cert.leaf.validFrom), notAfter: Date.parse(cert.leaf.validTo) });

/** A sliding-window limit on new orders (a client-side bound under the CA's own limits). */
class OrderRate {
  private readonly placed: number[] = [];
  private readonly count: number;
  private readonly periodMs: number;

  constructor(rate: { count: number; periodMs: number }) {
    this.count = rate.count;
    this.periodMs = rate.periodMs;
  }

  /** 0 when an order may be placed now (and counts it), else how long to wait. */
  take(now: number): number {
    while (this.placed.length > 0 && (this.placed[0] as number) <= now - this.periodMs) this.placed.shift();
    if (this.placed.length >= this.count) return (this.placed[0] as number) + this.periodMs - now;
    this.placed.push(now);
    return 0;
  }
}

export interface AcmeManagerOptions {
  config: AcmeConfig;
  names: readonly string[];
  storage: AcmeStorage;
  log: Logger;
  /** Lock settings (tests shorten them). */
  lock?: { waitMs?: number; ttlMs?: number };
}

export class AcmeManager {
  readonly config: AcmeConfig;
  readonly storage: AcmeStorage;
  readonly counters: AcmeCounters = {
    orders: { success: 0, failure: 0 },
    errors: Object.fromEntries(ACME_ERROR_KINDS.map((k) => [k, 0])) as Record<AcmeErrorKind, number>,
    shared: 0,
  };
  private readonly issuer: AcmeIssuer;
  private readonly states = new Map<string, NameState>();
  private readonly log: Logger;
  private readonly rate: OrderRate;
  private readonly lockOptions: { waitMs?: number; ttlMs?: number } | undefined;
  private readonly onDemandRate: OrderRate | undefined;
  /** Names the ask endpoint refused, and when: a scanner's handshakes don't each become a request to it. */
  private readonly refused = new Map<string, number>();
  private closed = false;

  constructor(options: AcmeManagerOptions) {
    this.config = options.config;
    this.storage = options.storage;
    this.log = options.log.child({ acme: options.config.ca });
    this.issuer = new AcmeIssuer(options.config, options.storage, this.log);
    this.rate = new OrderRate(options.config.order_rate);
    this.onDemandRate = options.config.on_demand ? new OrderRate(options.config.on_demand.rate) : undefined;
    this.lockOptions = options.lock;
    for (const name of options.names) this.track(name);
  }

  /** Starts the loop: stored certificates are adopted, missing or due ones are obtained now. */
  start(): void {
    for (const state of this.states.values()) void this.wake(state);
  }

  /** The names now managed (reload); removed names stop renewing, their stored certificates stay. */
  setNames(names: readonly string[]): void {
    const wanted = new Set(names);
    for (const [name, state] of this.states) {
      if (wanted.has(name) || this.config.on_demand) continue;
      if (state.timer) clearTimeout(state.timer);
      this.states.delete(name);
    }
    for (const name of wanted) if (!this.states.has(name)) void this.wake(this.track(name));
  }

  list(): CertificateStatus[] {
    return [...this.states.values()].map((s) => this.describe(s));
  }

  status(name: string): CertificateStatus | undefined {
    const state = this.states.get(name);
    return state ? this.describe(state) : undefined;
  }

  /**
   * Renews `name` now, whatever its age (the `renew now` action). Resolves with
   * its status once the attempt ended; a failure keeps the old certificate and
   * schedules retries with backoff.
   */
  async renewNow(name: string): Promise<CertificateStatus | undefined> {
    const state = this.states.get(name);
    if (!state) return undefined;
    await state.running;
    state.forced = true;
    await (state.running ?? this.attempt(state));
    return this.describe(state);
  }

  /**
   * On-demand TLS: a name first seen in a handshake is asked about at the `ask`
   * endpoint and, if approved and within the rate, obtained. True when a
   * certificate for it may now be in storage.
   */
  async onDemand(name: string): Promise<boolean> {
    const ask = this.config.on_demand?.ask;
    if (!ask || this.closed) return false;
    const known = this.states.get(name);
    if (known) {
      await known.running;
      return known.cert !== undefined;
    }
    const refusedAt = this.refused.get(name);
    if (refusedAt !== undefined && Date.now() - refusedAt < REFUSAL_MEMORY_MS) return false;
    if (!(await this.approved(ask, name))) {
      if (this.refused.size >= 10_000) this.refused.clear();
      this.refused.set(name, Date.now());
      return false;
    }
    const wait = this.onDemandRate?.take(Date.now()) ?? 0;
    if (wait > 0) {
      this.log.warn({ name, retryInMs: wait }, 'on-demand TLS: rate reached; the name is not obtained now');
      return false;
    }
    const state = this.track(name);
    await this.wake(state);
    await state.running;
    return state.cert !== undefined;
  }

  close(): void {
    this.closed = true;
    for (const state of this.states.values()) if (state.timer) clearTimeout(state.timer);
  }

  /** Expiry timestamps and warnings, for the metrics endpoint. */
  expiries(now = Date.now()): { name: string; notAfter: number; warning: boolean }[] {
    const out: { name: string; notAfter: number; warning: boolean }[] = [];
    for (const s of this.states.values()) if (s.cert) out.push({ name: s.name, notAfter: times(s.cert).notAfter, warning: expiryWarningDue(times(s.cert), now) });
    return out;
  }

  private track(name: string): NameState {
    const state: NameState = {
      name,
      cert: undefined,
      lastAttempt: undefined,
      lastRenewal: undefined,
      lastError: undefined,
      failures: 0,
      forced: false,
      nextAt: undefined,
      timer: undefined,
      running: undefined,
    };
    this.states.set(name, state);
    return state;
  }

  private async approved(ask: string, name: string): Promise<boolean> {
    const url = new URL(ask);
    url.searchParams.set('domain', name);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(10_000), redirect: 'manual' });
      await response.body?.cancel();
      if (response.status >= 200 && response.status < 300) return true;
      this.log.info({ name, status: response.status }, 'on-demand TLS: the ask endpoint did not approve the name');
    } catch (err) {
      this.log.error({ name, ask, err: (err as Error).message }, 'on-demand TLS: the ask endpoint is unreachable; the name is not obtained');
    }
    return false;
  }

  /** Reads storage (another instance may have renewed), then renews if due or sleeps until it is. */
  private async wake(state: NameState): Promise<void> {
    if (this.closed || this.states.get(state.name) !== state) return;
    await this.adoptStored(state);
    const due = state.cert ? renewalTime(times(state.cert)) : Date.now();
    if (state.failures === 0 && due > Date.now()) {
      this.warnExpiry(state);
      return this.schedule(state, due);
    }
    if (state.failures > 0 && state.nextAt !== undefined && state.nextAt > Date.now()) return this.schedule(state, state.nextAt);
    await (state.running ?? this.attempt(state));
  }

  private schedule(state: NameState, at: number): void {
    if (state.timer) clearTimeout(state.timer);
    state.nextAt = at;
    if (this.closed) return;
    state.timer = setTimeout(() => void this.wake(state), Math.max(0, Math.min(at - Date.now(), MAX_SLEEP_MS)));
    state.timer.unref();
  }

  /** Takes a newer certificate from storage (written by another instance, or before a restart). */
  private async adoptStored(state: NameState): Promise<StoredCertificate | undefined> {
    try {
      const stored = await readCertificate(this.storage, this.issuer.ca, state.name);
      if (stored && (!state.cert || times(stored).notAfter >= times(state.cert).notAfter)) state.cert = stored;
      return stored;
    } catch (err) {
      this.log.error({ name: state.name, storage: this.storage.description, err: (err as Error).message }, 'stored ACME certificate unreadable; it will be obtained again');
      return undefined;
    }
  }

  private attempt(state: NameState): Promise<void> {
    const run = this.order(state, state.forced).finally(() => {
      if (state.running === run) state.running = undefined;
    });
    state.running = run;
    return run;
  }

  private async order(state: NameState, forced: boolean): Promise<void> {
    if (state.timer) clearTimeout(state.timer);
    const before = state.cert?.bundle;
    const started = Date.now();
    state.lastAttempt = started;
    try {
      const wait = this.rate.take(started);
      if (wait > 0)
        throw new AcmeError('rate_limited', `this instance's order_rate (${this.config.order_rate.count} per ${this.config.order_rate.periodMs / 1000} s) is used up`, {
          retryAfterMs: wait,
        });
      let lock: { end(): Promise<void> };
      try {
        lock = await this.storage.lock(keys.lock(this.issuer.ca, state.name), this.lockOptions);
      } catch (err) {
        if (err instanceof LockTimeoutError) throw new AcmeError('lock', err.message, { cause: err });
        throw new AcmeError('storage', `cannot take the ACME lock in ${this.storage.description}: ${(err as Error).message}`, { cause: err });
      }
      try {
        // While we waited for the lock, another instance may have ordered this name.
        const stored = await this.adoptStored(state);
        const renewedByOther = stored !== undefined && (before === undefined || !stored.bundle.equals(before));
        if (stored && renewedByOther && (forced || renewalTime(times(stored)) > Date.now())) {
          this.counters.shared++;
          this.succeeded(state, stored, 'found in storage (another instance obtained it)');
          return;
        }
        if (stored && !forced && renewalTime(times(stored)) > Date.now()) return this.succeeded(state, stored, 'still valid in storage');
        this.log.info({ name: state.name, forced, renewal: before !== undefined }, before ? 'ACME: renewing certificate' : 'ACME: obtaining certificate');
        const issued = await this.issuer.obtain(state.name);
        try {
          await this.storage.write(keys.certificate(this.issuer.ca, state.name), joinBundle(issued.cert, issued.key));
          await this.storage.write(keys.updated(this.issuer.ca), `${new Date().toISOString()} ${state.name}\n`);
        } catch (err) {
          throw new AcmeError('storage', `certificate obtained but not stored in ${this.storage.description}: ${(err as Error).message}`, { cause: err });
        }
        const fresh = await readCertificate(this.storage, this.issuer.ca, state.name);
        if (!fresh) throw new AcmeError('storage', `certificate written to ${this.storage.description} but not readable back`);
        this.counters.orders.success++;
        state.lastRenewal = Date.now();
        this.succeeded(state, fresh, 'obtained from the CA', Date.now() - started);
      } finally {
        await lock.end();
      }
    } catch (err) {
      this.failed(state, err instanceof AcmeError ? err : new AcmeError('ca_error', (err as Error).message, { cause: err }));
    }
  }

  private succeeded(state: NameState, cert: StoredCertificate, how: string, tookMs?: number): void {
    state.cert = cert;
    state.failures = 0;
    state.forced = false;
    state.lastError = undefined;
    const t = times(cert);
    if (tookMs !== undefined)
      this.log.info(
        { name: state.name, issuer: cert.leaf.issuer.replace(/\n/g, ', '), notAfter: new Date(t.notAfter).toISOString(), tookMs },
        `ACME: certificate for ${state.name} ${how}; new connections get it now`,
      );
    else this.log.info({ name: state.name, notAfter: new Date(t.notAfter).toISOString() }, `ACME: certificate for ${state.name} ${how}`);
    this.schedule(state, renewalTime(t));
  }

  private failed(state: NameState, err: AcmeError): void {
    state.failures++;
    state.lastError = { kind: err.kind, message: err.message, at: Date.now() };
    this.counters.errors[err.kind]++;
    if (err.kind !== 'lock' && !(err.kind === 'rate_limited' && err.message.includes('order_rate'))) this.counters.orders.failure++;
    const { base, max } = this.config.retry;
    // Full backoff with jitter in its upper half: instances that failed together do not retry together.
    const backoff = cappedBackoff(base, max, state.failures - 1) * (0.5 + Math.random() * 0.5);
    const delay = Math.max(backoff, err.retryAfterMs ?? 0);
    const keeping = state.cert ? `the current certificate (valid until ${state.cert.leaf.validTo}) stays in use` : 'the placeholder certificate stays in use';
    this.log.error(
      { name: state.name, kind: err.kind, err: err.message, failures: state.failures, retryInMs: Math.round(delay) },
      `ACME: certificate for ${state.name} not obtained (${err.kind}): ${err.message}; ${keeping}; next attempt in ${Math.ceil(delay / 1000)} s`,
    );
    this.schedule(state, Date.now() + delay);
    this.warnExpiry(state);
  }

  private warnExpiry(state: NameState): void {
    if (!state.cert || !expiryWarningDue(times(state.cert), Date.now())) return;
    const t = times(state.cert);
    const left = t.notAfter - Date.now();
    this.log.warn(
      { name: state.name, notAfter: new Date(t.notAfter).toISOString() },
      left <= 0
        ? `ACME certificate for ${state.name} expired on ${new Date(t.notAfter).toISOString()}; clients will reject it`
        : `ACME certificate for ${state.name} expires in ${Math.ceil(left / 3_600_000)} hour(s), on ${new Date(t.notAfter).toISOString()}, and is not renewed yet`,
    );
  }

  private describe(state: NameState): CertificateStatus {
    const cert = state.cert;
    const t = cert ? times(cert) : undefined;
    const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
    return {
      name: state.name,
      status: !t ? 'pending' : t.notAfter <= Date.now() ? 'expired' : 'valid',
      issuer: cert ? cert.leaf.issuer.replace(/\n/g, ', ') : null,
      serial: cert ? cert.leaf.serialNumber : null,
      not_before: iso(t?.notBefore),
      not_after: iso(t?.notAfter),
      renew_at: iso(state.nextAt),
      last_attempt: iso(state.lastAttempt),
      last_renewal: iso(state.lastRenewal),
      last_error: state.lastError ? { kind: state.lastError.kind, message: state.lastError.message, at: new Date(state.lastError.at).toISOString() } : null,
      failures: state.failures,
      ca: this.config.ca,
      storage: this.storage.description,
    };
  }
}
