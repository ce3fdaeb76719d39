/**
 * The serving side of ACME, one per https listener on every data-path thread:
 * the certificates of managed names read from storage (a self-signed placeholder
 * until one exists), reloaded as soon as storage says a new one was written, and
 * TLS-ALPN-01 challenge certificates for the handshake. It never talks to the
 * CA: the manager (main thread, or another instance sharing storage) does.
 */
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import type { Logger } from '../../observe/logger.ts';
import { selfSignedCertificate } from './placeholder.ts';
import { type AcmeStorage, keys, readCertificate, splitBundle } from './storage.ts';

/** How often storage is asked whether a certificate changed (one stat). */
const POLL_MS = 1_000;
/** A TLS-ALPN-01 answer is looked up at most this often per name (validators connect a few times). */
const CHALLENGE_CACHE_MS = 2_000;

export interface ServedCertificate {
  readonly name: string;
  readonly pem: Buffer;
  readonly notAfter: Date;
  readonly context: SecureContext;
}

export class ManagedCertificates {
  private names: Set<string>;
  private readonly served = new Map<string, ServedCertificate>();
  private readonly challenges = new Map<string, { at: number; context: SecureContext | undefined }>();
  private storage: AcmeStorage;
  private readonly ca: string;
  private readonly protocol: SecureContextOptions;
  private readonly log: Logger;
  private readonly placeholderContext: SecureContext;
  /** The placeholder as PEM: the server's own default certificate when the listener has no certificate files. */
  readonly placeholderPem: { key: string; cert: string };
  private lastStamp: string | undefined;
  private readonly poller: NodeJS.Timeout;
  private polling: Promise<void> | undefined;
  /** Asked for a name no certificate covers yet (on-demand TLS); resolves once it may have been obtained. */
  private readonly onUnknownName: ((name: string) => Promise<boolean>) | undefined;

  private constructor(
    options: { storage: AcmeStorage; ca: string; names: readonly string[]; protocol: SecureContextOptions; log: Logger; onUnknownName?: (name: string) => Promise<boolean> },
    placeholder: { key: string; cert: string },
  ) {
    this.storage = options.storage;
    this.ca = options.ca;
    this.names = new Set(options.names);
    this.protocol = options.protocol;
    this.log = options.log;
    this.onUnknownName = options.onUnknownName;
    this.placeholderPem = placeholder;
    this.placeholderContext = createSecureContext({ ...options.protocol, ...placeholder });
    this.poller = setInterval(() => void this.refresh(), POLL_MS);
    this.poller.unref();
  }

  /** Loads what storage already holds, so a restart serves the stored certificates from the first handshake. */
  static async create(options: {
    storage: AcmeStorage;
    ca: string;
    names: readonly string[];
    protocol: SecureContextOptions;
    log: Logger;
    onUnknownName?: (name: string) => Promise<boolean>;
  }): Promise<ManagedCertificates> {
    const placeholder = await selfSignedCertificate(options.names.length > 0 ? options.names.slice(0, 100) : ['velocity.invalid'], 'Velocity placeholder (certificate pending)');
    const managed = new ManagedCertificates(options, placeholder);
    await managed.refresh(true);
    return managed;
  }

  /** Whether `name` is one this listener obtains certificates for. */
  manages(name: string): boolean {
    return this.names.has(name) || this.served.has(name);
  }

  /** The context for a managed name: its certificate, or the placeholder while it has none. Undefined when not managed. */
  contextFor(name: string): SecureContext | undefined {
    const served = this.served.get(name);
    if (served) return served.context;
    return this.names.has(name) ? this.placeholderContext : undefined;
  }

  get placeholder(): SecureContext {
    return this.placeholderContext;
  }

  /** On-demand TLS: obtains a certificate for an unknown name if allowed, then serves it (or nothing). */
  async onDemand(name: string): Promise<SecureContext | undefined> {
    if (!this.onUnknownName || !(await this.onUnknownName(name))) return undefined;
    this.names.add(name);
    await this.refresh(true);
    return this.served.get(name)?.context;
  }

  /** The TLS-ALPN-01 certificate for `name` while a validation is pending, from storage. */
  async challengeContext(name: string): Promise<SecureContext | undefined> {
    const cached = this.challenges.get(name);
    if (cached && Date.now() - cached.at < CHALLENGE_CACHE_MS && cached.context) return cached.context;
    let context: SecureContext | undefined;
    try {
      const pem = await this.storage.read(keys.tlsAlpn01(name));
      const parts = pem ? splitBundle(pem.toString()) : undefined;
      context = parts ? createSecureContext({ ...this.protocol, ...parts }) : undefined;
    } catch (err) {
      this.log.error({ name, err: (err as Error).message }, 'TLS-ALPN-01 challenge certificate unreadable');
    }
    this.challenges.set(name, { at: Date.now(), context });
    if (this.challenges.size > 1000) this.challenges.clear();
    return context;
  }

  /** New managed names (reload): existing certificates stay; new names get the placeholder until theirs arrive. */
  setNames(names: readonly string[]): void {
    this.names = new Set(names);
    void this.refresh(true);
  }

  /** The same storage reached another way (a reload changed its connection's credentials or database): read from it from now on. */
  useStorage(storage: AcmeStorage): void {
    this.storage = storage;
    void this.refresh(true);
  }

  close(): void {
    clearInterval(this.poller);
  }

  /** Reloads every certificate when storage's change stamp moved (or when forced). */
  refresh(force = false): Promise<void> {
    // A forced reload must read storage after it was asked for, not join a poll already under way.
    if (force && this.polling) return this.polling.then(() => this.refresh(true));
    this.polling ??= this.reload(force).finally(() => {
      this.polling = undefined;
    });
    return this.polling;
  }

  private async reload(force: boolean): Promise<void> {
    let stamp: string | undefined;
    try {
      stamp = await this.storage.stamp(keys.updated(this.ca));
    } catch (err) {
      this.log.warn({ storage: this.storage.description, err: (err as Error).message }, 'ACME storage unreadable; serving the certificates already loaded');
      return;
    }
    if (!force && stamp === this.lastStamp) return;
    this.lastStamp = stamp;
    const wanted = new Set([...this.names, ...this.served.keys()]);
    for (const name of wanted) {
      try {
        const stored = await readCertificate(this.storage, this.ca, name);
        if (!stored || this.served.get(name)?.pem.equals(stored.bundle)) continue;
        const context = createSecureContext({ ...this.protocol, cert: stored.cert, key: stored.key });
        this.served.set(name, { name, pem: stored.bundle, notAfter: new Date(stored.leaf.validTo), context });
      } catch (err) {
        // A broken file keeps the certificate already served (or the placeholder).
        this.log.error({ name, storage: this.storage.description, err: (err as Error).message }, 'stored ACME certificate not usable; the previous one stays in use');
      }
    }
  }
}
