/**
 * TLS termination: certificate files loaded and checked (with errors that name
 * the file), chosen per connection by SNI, watched and reloaded when the files
 * change, and warned about when they expire.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync, type StatWatcher, unwatchFile, watchFile } from 'node:fs';
import { createSecureContext, type SecureContext, type SecureContextOptions, type TLSSocket, type TlsOptions, type Server as TlsServer } from 'node:tls';
import type { TlsConfig } from '../config/schema/listeners.ts';
import type { Logger } from '../observe/logger.ts';
import type { ManagedCertificates } from './acme/served.ts';

/** The ALPN protocol of TLS-ALPN-01 validation (RFC 8737): the handshake is the whole conversation. */
export const ACME_TLS_ALPN = 'acme-tls/1';

/** A certificate or key file that cannot be used, with the file named. */
export class CertificateError extends Error {
  readonly file: string;

  constructor(file: string, message: string) {
    super(message);
    this.name = 'CertificateError';
    this.file = file;
  }
}

/** Warn this long before a certificate expires (the window in which ACME clients renew). */
export const EXPIRY_WARNING_MS = 30 * 86_400_000;

export interface CertificateFiles {
  cert: string;
  key: string;
}

export interface LoadedCertificate {
  readonly files: CertificateFiles;
  /** Lower-case DNS names it serves (from `hosts`, else its subjectAltName, else its CN). */
  readonly names: readonly string[];
  readonly subject: string;
  readonly notAfter: Date;
  readonly pem: { cert: Buffer; key: Buffer };
}

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new CertificateError(file, `cannot read ${what} file ${file}: ${why}`);
  }
}

/** Reads a PEM bundle of CA certificates (for verifying servers); throws CertificateError. */
export function loadCaFile(file: string): Buffer {
  const pem = readPem(file, 'CA');
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new CertificateError(file, `CA file ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  try {
    new X509Certificate(pem);
  } catch (err) {
    throw new CertificateError(file, `CA file ${file} is not a valid PEM certificate: ${(err as Error).message}`);
  }
  return pem;
}

/** The DNS names a certificate is valid for: subjectAltName DNS entries, else the subject CN. */
export function certificateNames(x509: X509Certificate): string[] {
  const names: string[] = [];
  for (const entry of (x509.subjectAltName ?? '').split(',')) {
    const m = /^\s*DNS:(.+)$/.exec(entry);
    if (m) names.push((m[1] as string).trim().toLowerCase());
  }
  if (names.length === 0) {
    const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject);
    if (cn) names.push((cn[1] as string).trim().toLowerCase());
  }
  return names;
}

/**
 * Loads a certificate and its private key and checks they belong together.
 * Throws CertificateError naming the file at fault.
 */
export function loadCertificate(files: CertificateFiles, hosts?: readonly string[]): LoadedCertificate {
  const cert = readPem(files.cert, 'certificate');
  const key = readPem(files.key, 'key');
  if (!cert.includes('-----BEGIN CERTIFICATE-----')) {
    throw new CertificateError(files.cert, `certificate file ${files.cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  }
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new CertificateError(files.cert, `certificate file ${files.cert} is not a valid PEM certificate: ${(err as Error).message}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    const encrypted = key.includes('ENCRYPTED');
    throw new CertificateError(
      files.key,
      encrypted ? `key file ${files.key} is encrypted; Velocity needs an unencrypted key` : `key file ${files.key} is not a valid PEM private key: ${(err as Error).message}`,
    );
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new CertificateError(files.key, `certificate ${files.cert} and key ${files.key} do not match (the key is not the certificate's private key)`);
  }
  return {
    files,
    names: hosts && hosts.length > 0 ? hosts.map((h) => h.toLowerCase()) : certificateNames(x509),
    subject: x509.subject.replace(/\n/g, ', '),
    notAfter: new Date(x509.validTo),
    pem: { cert, key },
  };
}

/** Protocol settings every certificate's context shares. */
export function protocolOptions(config: Pick<TlsConfig, 'min_version' | 'ciphers'>): SecureContextOptions {
  return { minVersion: config.min_version, ciphers: config.ciphers, honorCipherOrder: true };
}

/** A warning for a certificate that has expired or expires soon, or undefined. */
export function expiryWarning(cert: LoadedCertificate, now: number): string | undefined {
  const left = cert.notAfter.getTime() - now;
  if (left <= 0) return `certificate ${cert.files.cert} (${cert.names.join(', ')}) expired on ${cert.notAfter.toISOString()}; clients will reject it`;
  if (left <= EXPIRY_WARNING_MS)
    return `certificate ${cert.files.cert} (${cert.names.join(', ')}) expires in ${Math.ceil(left / 86_400_000)} day(s), on ${cert.notAfter.toISOString()}`;
  return undefined;
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
  /** Certificates obtained by ACME, when the listener has `tls.acme`. */
  readonly managed: ManagedCertificates | undefined;
  /** Handshakes that asked for acme-tls/1 (marked by the ALPN callback, which OpenSSL runs before the SNI one). */
  private readonly acmeHandshakes = new WeakSet<object>();

  /** Throws CertificateError when a file is missing, unreadable or mismatched. */
  constructor(config: TlsConfig, log: Logger, managed?: ManagedCertificates) {
    this.log = log;
    this.managed = managed;
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
