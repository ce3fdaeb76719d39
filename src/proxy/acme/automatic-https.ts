/**
 * Every ACME manager a config asks for (one per distinct `tls.acme` block:
 * listeners with the same settings share one, and its names), kept in step with
 * reloads, for the admin API, metrics and on-demand TLS. Main thread only.
 */
import { type AcmeConfig, acmeHosts } from '../../config/schema/acme.ts';
import type { Config } from '../../config/schema/root.ts';
import type { Logger } from '../../observe/logger.ts';
import type { MetricSource } from '../../observe/metrics.ts';
import { ACME_ERROR_KINDS } from './issuer.ts';
import { AcmeManager, type CertificateStatus } from './manager.ts';
import { acmeStorage } from './stores.ts';

/** Settings that make a distinct manager: everything but the names. */
const settingsKey = (acme: AcmeConfig) => JSON.stringify({ ...acme, hosts: undefined });

export class AutomaticHttps {
  private readonly managers = new Map<string, AcmeManager>();
  private readonly log: Logger;
  private readonly lock: { waitMs?: number; ttlMs?: number } | undefined;

  constructor(log: Logger, options: { lock?: { waitMs?: number; ttlMs?: number } } = {}) {
    this.log = log;
    this.lock = options.lock;
  }

  /** Starts managers for new acme blocks, updates names, stops those no longer in the config. */
  apply(config: Config): void {
    const wanted = new Map<string, { acme: AcmeConfig; names: Set<string> }>();
    for (const listener of config.listeners) {
      const acme = listener.type === 'https' ? listener.tls.acme : undefined;
      if (!acme) continue;
      const key = settingsKey(acme);
      const entry = wanted.get(key) ?? { acme, names: new Set<string>() };
      for (const name of acmeHosts(acme, config.services)) entry.names.add(name);
      wanted.set(key, entry);
    }
    for (const [key, manager] of this.managers) {
      if (wanted.has(key)) continue;
      manager.close();
      this.managers.delete(key);
    }
    for (const [key, { acme, names }] of wanted) {
      const existing = this.managers.get(key);
      if (existing) {
        existing.setNames([...names]);
        continue;
      }
      const manager = new AcmeManager({ config: acme, names: [...names], storage: acmeStorage(acme, config.state, this.log), log: this.log, lock: this.lock });
      this.managers.set(key, manager);
      if (!acme.challenges.includes('tls-alpn-01') && !config.listeners.some((l) => l.type !== 'https') && config.listen.length === 0)
        this.log.warn({ ca: acme.ca }, 'ACME http-01 needs a plain-HTTP listener on port 80 (a redirect or http listener); none is configured');
      if (acme.on_demand && config.workers !== 1)
        this.log.warn({ ca: acme.ca }, 'ACME on_demand needs workers: 1 (handshakes on worker threads cannot ask for a certificate yet); listed hosts are still obtained');
      manager.start();
    }
  }

  get active(): boolean {
    return this.managers.size > 0;
  }

  list(): CertificateStatus[] {
    return [...this.managers.values()].flatMap((m) => m.list());
  }

  status(name: string): CertificateStatus[] {
    return [...this.managers.values()].flatMap((m) => m.status(name) ?? []);
  }

  /** Renews `name` with every manager that has it; undefined when none does. */
  async renewNow(name: string): Promise<CertificateStatus[] | undefined> {
    const found = [...this.managers.values()].filter((m) => m.status(name));
    if (found.length === 0) return undefined;
    return (await Promise.all(found.map((m) => m.renewNow(name)))).filter((s): s is CertificateStatus => s !== undefined);
  }

  /** On-demand TLS for a listener's acme block. */
  onDemand = (acme: AcmeConfig, name: string): Promise<boolean> => this.managers.get(settingsKey(acme))?.onDemand(name) ?? Promise.resolve(false);

  /** Certificate expiry and ACME outcomes. Labels are the managed names (bounded by config and the on-demand rate). */
  readonly writeMetrics: MetricSource = (out) => {
    if (this.managers.size === 0) return;
    const now = Date.now();
    const managers = [...this.managers.values()];
    out.declare('velocity_acme_certificate_expiry_timestamp_seconds', 'gauge', 'When an ACME certificate expires (Unix seconds).');
    for (const m of managers) for (const e of m.expiries(now)) out.sample('velocity_acme_certificate_expiry_timestamp_seconds', { name: e.name }, Math.floor(e.notAfter / 1000));
    out.declare('velocity_acme_certificate_expiring', 'gauge', '1 when an ACME certificate is close to expiry and not renewed (the expiry warning).');
    for (const m of managers) for (const e of m.expiries(now)) out.sample('velocity_acme_certificate_expiring', { name: e.name }, e.warning ? 1 : 0);
    out.declare('velocity_acme_orders_total', 'counter', 'ACME orders by result.');
    const sum = (f: (m: AcmeManager) => number) => managers.reduce((n, m) => n + f(m), 0);
    out.sample(
      'velocity_acme_orders_total',
      { result: 'success' },
      sum((m) => m.counters.orders.success),
    );
    out.sample(
      'velocity_acme_orders_total',
      { result: 'failure' },
      sum((m) => m.counters.orders.failure),
    );
    out.sample(
      'velocity_acme_orders_total',
      { result: 'shared' },
      sum((m) => m.counters.shared),
    );
    out.declare('velocity_acme_errors_total', 'counter', 'Failed ACME attempts by kind (ca_unreachable, rate_limited, account, validation, ca_error, storage, lock).');
    for (const kind of ACME_ERROR_KINDS)
      out.sample(
        'velocity_acme_errors_total',
        { kind },
        sum((m) => m.counters.errors[kind]),
      );
  };

  close(): void {
    for (const m of this.managers.values()) m.close();
    this.managers.clear();
  }
}
