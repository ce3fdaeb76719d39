/**
 * Every ACME manager a config asks for (one per distinct `tls.acme` block:
 * listeners with the same settings share one, and its names), kept in step with
 * reloads, for the admin API, metrics and on-demand TLS. Main thread only.
 */
import { type AcmeConfig, acmeHosts } from '../../config/schema/acme.ts';
import type { Config } from '../../config/schema/root.ts';
import type { Logger } from '../../observe/logger.ts';
import type { Collectors } from '../../observe/metrics.ts';
import { ACME_ERROR_KINDS } from './issuer.ts';
import { AcmeManager, type CertificateStatus } from './manager.ts';
import type { AcmeStorages, StorageLease } from './stores.ts';

/** Settings that make a distinct manager: everything but the names. */
const settingsKey = (acme: AcmeConfig) => JSON.stringify({ ...acme, hosts: undefined });

/** A running manager, the storage it holds and what that storage is (its connection identity). */
interface Running {
  readonly manager: AcmeManager;
  readonly lease: StorageLease;
  readonly storageId: string;
}

export class AutomaticHttps {
  private readonly running = new Map<string, Running>();
  private readonly log: Logger;
  private readonly storages: AcmeStorages;
  private readonly lock: { waitMs?: number; ttlMs?: number } | undefined;

  /** `storages`: where managers get their storage (the thread's fleet connections), given back when a manager stops. */
  constructor(log: Logger, storages: AcmeStorages, options: { lock?: { waitMs?: number; ttlMs?: number } } = {}) {
    this.log = log;
    this.storages = storages;
    this.lock = options.lock;
  }

  /**
   * Starts managers for new acme blocks, updates names, stops those no longer in
   * the config or whose storage connection changed (credentials, database), and
   * gives their storages back.
   */
  apply(config: Config): void {
    const wanted = new Map<string, { acme: AcmeConfig; names: Set<string>; storageId: string }>();
    for (const listener of config.listeners) {
      const acme = listener.type === 'https' ? listener.tls.acme : undefined;
      if (!acme) continue;
      const key = settingsKey(acme);
      const entry = wanted.get(key) ?? { acme, names: new Set<string>(), storageId: this.storages.identity(acme, config) };
      for (const name of acmeHosts(acme, config.services)) entry.names.add(name);
      wanted.set(key, entry);
    }
    for (const [key, running] of this.running) {
      if (wanted.get(key)?.storageId === running.storageId) continue;
      this.stop(running);
      this.running.delete(key);
    }
    for (const [key, { acme, names, storageId }] of wanted) {
      const existing = this.running.get(key);
      if (existing) {
        existing.manager.setNames([...names]);
        continue;
      }
      const lease = this.storages.acquire(acme, config);
      const manager = new AcmeManager({ config: acme, names: [...names], storage: lease.storage, log: this.log, lock: this.lock });
      this.running.set(key, { manager, lease, storageId });
      if (!acme.challenges.includes('tls-alpn-01') && !config.listeners.some((l) => l.type !== 'https') && config.listen.length === 0)
        this.log.warn({ ca: acme.ca }, 'ACME http-01 needs a plain-HTTP listener on port 80 (a redirect or http listener); none is configured');
      if (acme.on_demand && config.workers !== 1)
        this.log.warn({ ca: acme.ca }, 'ACME on_demand needs workers: 1 (handshakes on worker threads cannot ask for a certificate yet); listed hosts are still obtained');
      manager.start();
    }
  }

  get active(): boolean {
    return this.running.size > 0;
  }

  private get managers(): AcmeManager[] {
    return [...this.running.values()].map((r) => r.manager);
  }

  private stop(running: Running): void {
    running.manager.close();
    running.lease.end();
  }

  list(): CertificateStatus[] {
    return this.managers.flatMap((m) => m.list());
  }

  status(name: string): CertificateStatus[] {
    return this.managers.flatMap((m) => m.status(name) ?? []);
  }

  /** Renews `name` with every manager that has it; undefined when none does. */
  async renewNow(name: string): Promise<CertificateStatus[] | undefined> {
    const found = this.managers.filter((m) => m.status(name));
    if (found.length === 0) return undefined;
    return (await Promise.all(found.map((m) => m.renewNow(name)))).filter((s): s is CertificateStatus => s !== undefined);
  }

  /** On-demand TLS for a listener's acme block. */
  onDemand = (acme: AcmeConfig, name: string): Promise<boolean> => this.running.get(settingsKey(acme))?.manager.onDemand(name) ?? Promise.resolve(false);

  /** Certificate expiry and ACME outcomes (declared in metric-table.ts). Labels are the managed names (bounded by config and the on-demand rate). */
  readonly metrics: Collectors = {
    velocity_acme_certificate_expiry_timestamp_seconds: () => this.expiries().map((e) => ({ labels: { name: e.name }, value: Math.floor(e.notAfter / 1000) })),
    velocity_acme_certificate_expiring: () => this.expiries().map((e) => ({ labels: { name: e.name }, value: e.warning ? 1 : 0 })),
    velocity_acme_orders_total: () =>
      this.running.size === 0
        ? []
        : [
            { labels: { result: 'success' }, value: this.sum((m) => m.counters.orders.success) },
            { labels: { result: 'failure' }, value: this.sum((m) => m.counters.orders.failure) },
            { labels: { result: 'shared' }, value: this.sum((m) => m.counters.shared) },
          ],
    velocity_acme_errors_total: () => (this.running.size === 0 ? [] : ACME_ERROR_KINDS.map((kind) => ({ labels: { kind }, value: this.sum((m) => m.counters.errors[kind]) }))),
  };

  private expiries() {
    const now = Date.now();
    return this.managers.flatMap((m) => m.expiries(now));
  }

  private sum(f: (m: AcmeManager) => number): number {
    return this.managers.reduce((n, m) => n + f(m), 0);
  }

  close(): void {
    for (const running of this.running.values()) this.stop(running);
    this.running.clear();
  }
}
