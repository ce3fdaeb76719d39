/**
 * Every listener a config asks for — plain `listen` addresses, typed
 * `listeners` (https, http/h2c, redirect) and `mode: tcp` services — opened
 * together, reconciled on reload (new ones open, removed ones drain and close,
 * certificate changes apply in place) and closed together.
 */
import { type AcmeConfig, acmeHosts } from '../config/schema/acme.ts';
import type { HstsConfig, ListenerConfig, TlsConfig } from '../config/schema/listeners.ts';
import type { Config } from '../config/schema/root.ts';
import type { ListenAddress } from '../config-fields.ts';
import type { Logger } from '../observe/logger.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { Http01Answers } from './acme/http01.ts';
import { ManagedCertificates, type ManagedSettings } from './acme/served.ts';
import { caKey } from './acme/storage.ts';
import type { AcmeStorages, StorageLease } from './acme/stores.ts';
import { listenHttp } from './listener.ts';
import { redirectToHttps } from './redirect.ts';
import { listenTcp } from './tcp.ts';
import { protocolOptions, TlsTermination } from './tls.ts';

export type ListenerKind = 'http' | 'https' | 'redirect' | 'tcp';

export interface BoundListener {
  readonly kind: ListenerKind;
  /** The bound address (port resolved when 0 was asked). */
  readonly address: ListenAddress;
  /** For `tcp`: the service it feeds. */
  readonly service?: string;
}

/** What a config asks for, keyed by kind and configured address. */
interface Wanted {
  key: string;
  kind: ListenerKind;
  address: ListenAddress;
  /** Settings that need a new socket to change (compared as JSON). */
  settings: string;
  listener?: ListenerConfig;
  service?: string;
}

interface Open extends Wanted {
  bound: BoundListener;
  tls: TlsTermination | undefined;
  /** For https with tls.acme: the storage its certificates are read from, and that storage's identity. */
  storage?: { lease: StorageLease; id: string };
  /** For tcp: points the listener at another service (a rename on the same address). */
  retarget?: (service: string) => void;
  close(deadline: number): Promise<void>;
}

export function hstsHeader(hsts: HstsConfig): string {
  return `max-age=${Math.floor(hsts.max_age / 1000)}${hsts.include_subdomains ? '; includeSubDomains' : ''}${hsts.preload ? '; preload' : ''}`;
}

function wantedBy(config: Config): Wanted[] {
  // Port 0 means "any free port": such listeners are told apart by their place in the
  // config, or for TCP services by the service they feed.
  let n = 0;
  const key = (kind: ListenerKind, a: ListenAddress, service?: string) => `${kind} ${a.host}:${a.port}${a.port !== 0 ? '' : service ? ` ${service}` : `#${n++}`}`;
  const out: Wanted[] = config.listen.map((address) => ({ key: key('http', address), kind: 'http', address, settings: '' }));
  for (const listener of config.listeners) {
    const { tls, ...rest } = listener as ListenerConfig & { tls?: unknown };
    out.push({ key: key(listener.type, listener.listen), kind: listener.type, address: listener.listen, settings: JSON.stringify(rest), listener });
  }
  for (const service of config.services) {
    if (service.mode === 'tcp' && service.listen)
      out.push({ key: key('tcp', service.listen, service.name), kind: 'tcp', address: service.listen, settings: '', service: service.name });
  }
  return out;
}

/**
 * What a reload cannot change on a listener that stays open: its settings other than
 * certificates (HTTP/2, HSTS, redirect target), and the client limits its sockets
 * were made with. Named as the config names them.
 */
export function listenerFieldsNeedingRestart(next: Config, previous: Config): string[] {
  const before = new Map(wantedBy(previous).map((w) => [w.key, w.settings]));
  const fields = wantedBy(next)
    .filter((w) => before.has(w.key) && before.get(w.key) !== w.settings)
    .map((w) => `listeners[${next.listeners.indexOf(w.listener as ListenerConfig)}]`);
  if (JSON.stringify(next.client) !== JSON.stringify(previous.client)) fields.push('client');
  return fields;
}

export interface ListenerSetOptions {
  /** Where ACME storages come from (this thread's fleet connections). */
  storages: AcmeStorages;
  reusePort?: boolean;
  /** On-demand TLS: obtains a certificate for a name first seen in a handshake; true when one may now be in storage. */
  onDemand?: (acme: AcmeConfig, name: string) => Promise<boolean>;
}

/** One storage per distinct acme `storage` that answers HTTP-01. */
function http01Storages(config: Config, storages: AcmeStorages): StorageLease[] {
  const seen = new Map<string, StorageLease>();
  for (const l of config.listeners) {
    const acme = l.type === 'https' ? l.tls.acme : undefined;
    if (!acme?.challenges.includes('http-01')) continue;
    const id = storages.identity(acme, config);
    if (!seen.has(id)) seen.set(id, storages.acquire(acme, config));
  }
  return [...seen.values()];
}

export class ListenerSet {
  private readonly open = new Map<string, Open>();
  private readonly plane: DataPlane;
  private readonly log: Logger;
  private readonly reusePort: boolean;
  private readonly onDemand: ListenerSetOptions['onDemand'];
  private readonly storages: AcmeStorages;
  /** ACME HTTP-01 answers, shared by every plain-HTTP listener. */
  private readonly http01 = new Http01Answers();
  /** The storages the HTTP-01 answers read, given back when a reload or close stops using them. */
  private http01Leases: StorageLease[] = [];

  private constructor(plane: DataPlane, log: Logger, options: ListenerSetOptions) {
    this.plane = plane;
    this.log = log;
    this.reusePort = options.reusePort ?? false;
    this.onDemand = options.onDemand;
    this.storages = options.storages;
  }

  /** Opens every listener of `config`; on any failure closes those already open and throws (ListenError, CertificateError). */
  static async open(plane: DataPlane, config: Config, log: Logger, options: ListenerSetOptions): Promise<ListenerSet> {
    const set = new ListenerSet(plane, log, options);
    await set.reconcile(config);
    return set;
  }

  get bound(): BoundListener[] {
    return [...this.open.values()].map((o) => o.bound);
  }

  /** The first HTTPS listener's port: where the redirect listener sends clients by default. */
  private httpsPort(): number {
    for (const o of this.open.values()) if (o.kind === 'https') return o.bound.address.port;
    return 443;
  }

  /**
   * Makes the open listeners match `config`: opens new ones first (if one fails,
   * the new ones close again and this throws, leaving the old set), applies
   * certificate changes in place, and drains removed ones in the background.
   * Other changed settings of a listener that stays take effect on restart
   * (listenerFieldsNeedingRestart names them for the reload's result).
   */
  async reconcile(config: Config): Promise<void> {
    const wanted = wantedBy(config);
    const opened: Open[] = [];
    this.useHttp01Storages(http01Storages(config, this.storages));
    try {
      for (const w of wanted) {
        const existing = this.open.get(w.key);
        // Never two sockets for one key: the second could not be found again to close it.
        if (!existing && !opened.some((o) => o.key === w.key)) opened.push(await this.start(w, config));
      }
      for (const w of wanted) {
        const existing = this.open.get(w.key);
        if (existing?.tls && w.listener?.type === 'https') {
          existing.tls.update(w.listener.tls);
          await this.followAcme(existing, w.listener.tls, config);
        }
        if (existing?.retarget && w.service && existing.service !== w.service) existing.retarget(w.service);
      }
    } catch (err) {
      await Promise.all(opened.map((o) => o.close(Date.now())));
      throw err;
    }
    for (const o of opened) this.open.set(o.key, o);
    const keep = new Set(wanted.map((w) => w.key));
    for (const [key, o] of this.open) {
      if (keep.has(key)) continue;
      this.open.delete(key);
      this.log.info({ listener: key }, 'listener removed from the config: draining it');
      void o.close(Date.now() + config.shutdown_timeout);
    }
  }

  private async start(w: Wanted, config: Config): Promise<Open> {
    const { plane, reusePort } = this;
    if (w.kind === 'tcp') {
      const tcp = await listenTcp(plane, w.service as string, w.address, { reusePort });
      const open: Open = {
        ...w,
        bound: { kind: 'tcp', address: tcp.address, service: w.service },
        tls: undefined,
        close: (d) => tcp.close(d),
        retarget: (service) => {
          tcp.retarget(service);
          open.service = service;
          open.bound = { ...open.bound, service };
        },
      };
      return open;
    }
    const listener = w.listener;
    if (listener?.type === 'https') {
      const acme = listener.tls.acme;
      // Held while the listener is open: its certificates are read from this storage.
      const storage = acme ? { lease: this.storages.acquire(acme, config), id: this.storages.identity(acme, config) } : undefined;
      const lease = storage?.lease;
      let tls: TlsTermination | undefined;
      try {
        const managed =
          acme && lease ? await ManagedCertificates.create(this.managedSettings(acme, config, lease), { protocol: protocolOptions(listener.tls), log: this.log }) : undefined;
        tls = new TlsTermination(listener.tls, this.log, managed);
        const http = await listenHttp(plane, w.address, config.client, { reusePort, tls, http2: listener.http2, hsts: listener.hsts ? hstsHeader(listener.hsts) : undefined });
        const open: Open = { ...w, bound: { kind: 'https', address: http.address }, tls, storage, close: (d) => http.close(d).finally(() => open.storage?.lease.end()) };
        return open;
      } catch (err) {
        tls?.close();
        lease?.end();
        throw err;
      }
    }
    const onRequest = listener?.type === 'redirect' ? redirectToHttps(listener.status, () => listener.port ?? this.httpsPort()) : undefined;
    const http = await listenHttp(plane, w.address, config.client, { reusePort, http2: listener?.type === 'http' && listener.http2, onRequest, http01: this.http01 });
    return { ...w, bound: { kind: w.kind, address: http.address }, tls: undefined, close: (d) => http.close(d) };
  }

  /** Closes every listener: stop accepting, let requests and tunnels finish until the deadline. */
  async close(deadline: number): Promise<void> {
    const all = [...this.open.values()];
    this.open.clear();
    await Promise.all(all.map((o) => o.close(deadline)));
    this.useHttp01Storages([]);
  }

  /** What the certificates of an https listener with this acme block are served from. */
  private managedSettings(acme: AcmeConfig, config: Config, lease: StorageLease): ManagedSettings {
    const onDemand = this.onDemand;
    return {
      storage: lease.storage,
      ca: caKey(acme.ca),
      names: acmeHosts(acme, config.services),
      // The manager is found by the block's settings: the callback names the block of this config.
      onUnknownName: acme.on_demand && onDemand ? (name) => onDemand(acme, name) : undefined,
    };
  }

  /**
   * A listener that stays follows its acme block as reloaded: added (its certificates
   * served from now on), removed (the files alone serve), or changed — names, CA and
   * on-demand settings, and the storage connection the new config names (the old one
   * given back).
   */
  private async followAcme(open: Open, tls: TlsConfig, config: Config): Promise<void> {
    const termination = open.tls;
    const acme = tls.acme;
    const previous = open.storage;
    if (!termination) return;
    if (!acme) {
      termination.useManaged(undefined);
      open.storage = undefined;
      previous?.lease.end();
      return;
    }
    const id = this.storages.identity(acme, config);
    const storage = previous?.id === id ? previous : { lease: this.storages.acquire(acme, config), id };
    const managed = termination.managed;
    if (managed) managed.follow(this.managedSettings(acme, config, storage.lease));
    else {
      try {
        termination.useManaged(await ManagedCertificates.create(this.managedSettings(acme, config, storage.lease), { protocol: protocolOptions(tls), log: this.log }));
      } catch (err) {
        storage.lease.end();
        throw err;
      }
    }
    open.storage = storage;
    if (previous && previous !== storage) previous.lease.end();
  }

  /** Answers HTTP-01 from `leases`, giving back the storages used before. */
  private useHttp01Storages(leases: StorageLease[]): void {
    this.http01.use(leases.map((l) => l.storage));
    for (const lease of this.http01Leases) lease.end();
    this.http01Leases = leases;
  }
}
