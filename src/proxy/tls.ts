/**
 * TLS termination: certificate files loaded and checked (with errors that name
 * the file), chosen per connection by SNI, watched and reloaded when the files
 * change, and warned about when they expire.
 */
import { type StatWatcher, unwatchFile, watchFile } from 'node:fs';
import { createSecureContext, type SecureContext, type SecureContextOptions, type TLSSocket, type TlsOptions, type Server as TlsServer } from 'node:tls';
import { type CertificateError, expiryWarning, type LoadedCertificate, loadCertificate } from '../certificates.ts';
import type { TlsConfig } from '../config/schema/listeners.ts';
import type { Logger } from '../observe/logger.ts';
import type { ManagedCertificates } from './acme/served.ts';

/** The ALPN protocol of TLS-ALPN-01 validation (RFC 8737): the handshake is the whole conversation. */
export const ACME_TLS_ALPN = 'acme-tls/1';

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
  /** Undefined when the listener has no certificate files (ACME only). */
  readonly defaultCertificate: LoadedCertificate | undefined;
  private readonly exact = new Map<string, Entry>();
  private readonly wildcard = new Map<string, Entry>();
  private readonly fallback: Entry | undefined;

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
    this.fallback = entries.find((e) => e.isDefault) ?? entries[0];
    this.certificates = entries.map((e) => e.cert);
    this.defaultCertificate = this.fallback?.cert;
  }

  /** The secure context for a client's SNI name (undefined only when there are no certificate files). */
  contextFor(servername: string | undefined): SecureContext | undefined {
    return this.entryFor(servername)?.context;
  }

  /** The context of a certificate file naming exactly this (lower-case) name. */
  exactContextFor(name: string): SecureContext | undefined {
    return this.exact.get(name)?.context;
  }

  certificateFor(servername: string | undefined): LoadedCertificate | undefined {
    return this.entryFor(servername)?.cert;
  }

  private entryFor(servername: string | undefined): Entry | undefined {
    if (!servername) return this.fallback;
    const name = servername.toLowerCase();
    const exact = this.exact.get(name);
    if (exact) return exact;
    const dot = name.indexOf('.');
    return (dot > 0 && this.wildcard.get(name.slice(dot + 1))) || this.fallback;
  }

  /** Options for the server's own (no-SNI) context; without certificate files, the ACME placeholder's. */
  serverOptions(config: TlsConfig, placeholder?: { cert: string; key: string }): SecureContextOptions {
    const def = this.defaultCertificate;
    return { ...protocolOptions(config), ...(def ? { cert: def.pem.cert, key: def.pem.key } : placeholder) };
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
  /** Certificates obtained by ACME, when the listener has `tls.acme` (a reload may add or remove it). */
  private acme: ManagedCertificates | undefined;
  /** Handshakes that asked for acme-tls/1 (marked by the ALPN callback, which OpenSSL runs before the SNI one). */
  private readonly acmeHandshakes = new WeakSet<object>();

  /** Throws CertificateError when a file is missing, unreadable or mismatched. */
  constructor(config: TlsConfig, log: Logger, managed?: ManagedCertificates) {
    this.log = log;
    this.acme = managed;
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

  get managed(): ManagedCertificates | undefined {
    return this.acme;
  }

  /** ACME certificates added to or removed from the listener by a reload; the ones served before are closed. */
  useManaged(managed: ManagedCertificates | undefined): void {
    if (managed === this.acme) return;
    this.acme?.close();
    this.acme = managed;
    this.server?.setSecureContext(this.serverOptions());
  }

  /** The server whose default (no-SNI) certificate follows reloads. */
  attach(server: TlsServer): void {
    this.server = server;
    // A TLS-ALPN-01 validation ends with the handshake: nothing is served on that connection.
    server.on('secureConnection', (socket: TLSSocket) => {
      if (socket.alpnProtocol === ACME_TLS_ALPN) socket.end();
    });
  }

  /** Options for the TLS server: its default certificate, and SNI and ALPN callbacks. */
  serverOptions(): SecureContextOptions {
    return this.store.serverOptions(this.config, this.managed?.placeholderPem);
  }

  /**
   * The handshake hooks of a server speaking `protocols` (by preference): the
   * certificate by SNI, and ACME's acme-tls/1 answered with the challenge
   * certificate. Any server that terminates TLS for this listener uses these.
   */
  handshakeOptions(protocols: readonly string[]): Pick<TlsOptions, 'SNICallback' | 'ALPNCallback'> {
    const termination = this;
    return {
      // Node calls both with the TLSSocket as `this`: the one link between the two callbacks of a handshake.
      ALPNCallback(this: TLSSocket | undefined, { protocols: offered }) {
        if (termination.managed && offered.includes(ACME_TLS_ALPN) && this) {
          termination.acmeHandshakes.add(this);
          return ACME_TLS_ALPN;
        }
        return protocols.find((p) => offered.includes(p));
      },
      SNICallback(this: TLSSocket | undefined, servername, cb) {
        termination.selectContext(servername, this !== undefined && termination.acmeHandshakes.has(this)).then(
          (context) => cb(null, context),
          (err: Error) => cb(err),
        );
      },
    };
  }

  /**
   * Certificate files naming the host exactly come first, then ACME's for the
   * names it manages (or its placeholder), then file wildcards and the default.
   */
  private async selectContext(servername: string, acmeChallenge: boolean): Promise<SecureContext | undefined> {
    const name = servername.toLowerCase();
    const managed = this.managed;
    if (acmeChallenge && managed) return (await managed.challengeContext(name)) ?? managed.placeholder;
    const exact = this.store.exactContextFor(name);
    if (exact || !managed) return exact ?? this.store.contextFor(name);
    const context = managed.contextFor(name) ?? this.store.contextFor(name) ?? (await managed.onDemand(name));
    return context ?? managed.placeholder;
  }

  /** Applies changed settings (reload). Throws CertificateError and keeps the old ones when they don't load. */
  update(config: TlsConfig): void {
    if (JSON.stringify(config) === JSON.stringify(this.config)) return;
    const store = new CertificateStore(config);
    this.config = config;
    this.swap(store, 'certificate settings changed');
  }

  close(): void {
    this.managed?.close();
    clearInterval(this.expiryTimer);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    for (const file of this.watched.keys()) unwatchFile(file);
    this.watched.clear();
  }

  private swap(store: CertificateStore, reason: string): void {
    this.store = store;
    this.syncWatches();
    this.server?.setSecureContext(store.serverOptions(this.config, this.managed?.placeholderPem));
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
