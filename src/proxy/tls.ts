/**
 * TLS termination: certificate files loaded and checked (with errors that name
 * the file), chosen per connection by SNI, watched and reloaded when the files
 * change, and warned about when they expire.
 */
import { type StatWatcher, unwatchFile, watchFile } from 'node:fs';
import { createSecureContext, type SecureContext, type SecureContextOptions, type Server as TlsServer } from 'node:tls';
import { type CertificateError, type CertificateFiles, expiryWarning, type LoadedCertificate, loadCertificate } from '../certificates.ts';
import type { TlsConfig } from '../config/schema/listeners.ts';
import type { Logger } from '../observe/logger.ts';

/** Protocol settings every certificate's context shares. */
export function protocolOptions(config: Pick<TlsConfig, 'min_version' | 'ciphers'>): SecureContextOptions {
  return { minVersion: config.min_version, ciphers: config.ciphers, honorCipherOrder: true };
}

interface Entry {
  cert: LoadedCertificate;
  context: SecureContext;
}

/**
 * The certificates of one listener, indexed by name: an exact name beats a
 * `*.suffix` wildcard (one label deep, as browsers match), and a name that
 * matches nothing — or no SNI at all — gets the default certificate.
 */
export class CertificateStore {
  readonly certificates: readonly LoadedCertificate[];
  readonly defaultCertificate: LoadedCertificate;
  private readonly exact = new Map<string, Entry>();
  private readonly wildcard = new Map<string, Entry>();
  private readonly fallback: Entry;

  constructor(config: TlsConfig) {
    const protocol = protocolOptions(config);
    const entries = config.certificates.map((c) => {
      const cert = loadCertificate({ cert: c.cert, key: c.key }, c.hosts);
      return { cert, context: createSecureContext({ ...protocol, cert: cert.pem.cert, key: cert.pem.key }), isDefault: c.default };
    });
    for (const entry of entries) {
      for (const name of entry.cert.names) {
        const map = name.startsWith('*.') ? this.wildcard : this.exact;
        const key = name.startsWith('*.') ? name.slice(2) : name;
        if (!map.has(key)) map.set(key, entry);
      }
    }
    this.fallback = entries.find((e) => e.isDefault) ?? (entries[0] as Entry);
    this.certificates = entries.map((e) => e.cert);
    this.defaultCertificate = this.fallback.cert;
  }

  /** The secure context for a client's SNI name. */
  contextFor(servername: string | undefined): SecureContext {
    return this.entryFor(servername).context;
  }

  certificateFor(servername: string | undefined): LoadedCertificate {
    return this.entryFor(servername).cert;
  }

  private entryFor(servername: string | undefined): Entry {
    if (!servername) return this.fallback;
    const name = servername.toLowerCase();
    const exact = this.exact.get(name);
    if (exact) return exact;
    const dot = name.indexOf('.');
    return (dot > 0 && this.wildcard.get(name.slice(dot + 1))) || this.fallback;
  }

  /** Options for the server's own (no-SNI) context. */
  serverOptions(config: TlsConfig): SecureContextOptions {
    return { ...protocolOptions(config), cert: this.defaultCertificate.pem.cert, key: this.defaultCertificate.pem.key };
  }
}

/** How often certificate files are checked for changes (stat polling survives renames and symlink swaps). */
const WATCH_INTERVAL_MS = 1_000;
/** Certificate and key are often replaced one after the other: wait for both. */
const SETTLE_MS = 300;
const EXPIRY_CHECK_MS = 12 * 3_600_000;

/**
 * A listener's live certificates: the store in use now, replaced whole when the
 * files change and load cleanly (a broken pair keeps the old one and logs why).
 */
export class TlsTermination {
  private store: CertificateStore;
  private config: TlsConfig;
  private readonly watched = new Map<string, StatWatcher>();
  private settleTimer: NodeJS.Timeout | undefined;
  private readonly expiryTimer: NodeJS.Timeout;
  private server: TlsServer | undefined;
  private readonly log: Logger;

  /** Throws CertificateError when a file is missing, unreadable or mismatched. */
  constructor(config: TlsConfig, log: Logger) {
    this.log = log;
    this.config = config;
    this.store = new CertificateStore(config);
    this.warnExpiry();
    this.expiryTimer = setInterval(() => this.warnExpiry(), EXPIRY_CHECK_MS).unref();
    this.syncWatches();
  }

  get current(): CertificateStore {
    return this.store;
  }

  get settings(): TlsConfig {
    return this.config;
  }

  /** The server whose default (no-SNI) certificate follows reloads. */
  attach(server: TlsServer): void {
    this.server = server;
  }

  /** For the server's SNICallback. */
  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    cb(null, this.store.contextFor(servername));
  };

  /** Applies changed settings (reload). Throws CertificateError and keeps the old ones when they don't load. */
  update(config: TlsConfig): void {
    if (JSON.stringify(config) === JSON.stringify(this.config)) return;
    const store = new CertificateStore(config);
    this.config = config;
    this.swap(store, 'certificate settings changed');
  }

  close(): void {
    clearInterval(this.expiryTimer);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    for (const file of this.watched.keys()) unwatchFile(file);
    this.watched.clear();
  }

  private swap(store: CertificateStore, reason: string): void {
    this.store = store;
    this.syncWatches();
    this.server?.setSecureContext(store.serverOptions(this.config));
    this.log.info({ reason, certificates: store.certificates.map((c) => ({ file: c.files.cert, names: c.names, notAfter: c.notAfter.toISOString() })) }, 'TLS certificates loaded');
    this.warnExpiry();
  }

  private syncWatches(): void {
    const wanted = new Set<string>();
    if (this.config.watch) for (const c of this.config.certificates) wanted.add(c.cert).add(c.key);
    for (const file of this.watched.keys()) {
      if (!wanted.has(file)) {
        unwatchFile(file);
        this.watched.delete(file);
      }
    }
    for (const file of wanted) {
      if (this.watched.has(file)) continue;
      const watcher = watchFile(file, { interval: WATCH_INTERVAL_MS, persistent: false }, (now, before) => {
        if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino) this.scheduleReload(file);
      });
      this.watched.set(file, watcher);
    }
  }

  private scheduleReload(file: string): void {
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined;
      try {
        this.swap(new CertificateStore(this.config), `${file} changed`);
      } catch (err) {
        this.log.error({ file: (err as CertificateError).file ?? file, err: (err as Error).message }, 'TLS certificate change not applied; the previous certificates stay in use');
      }
    }, SETTLE_MS);
    this.settleTimer.unref();
  }

  private warnExpiry(): void {
    const now = Date.now();
    for (const cert of this.store.certificates) {
      const warning = expiryWarning(cert, now);
      if (warning) this.log.warn({ file: cert.files.cert, names: cert.names, notAfter: cert.notAfter.toISOString() }, warning);
    }
  }
}
