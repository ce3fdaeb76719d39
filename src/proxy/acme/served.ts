/**
 * The serving side of ACME, one per https listener on every data-path thread:
 * the certificates of managed names read from storage (a self-signed placeholder
 * until one exists), reloaded as soon as storage says a new one was written, and
 * TLS-ALPN-01 challenge certificates for the handshake. It never talks to the
 * CA: the manager (main thread, or another instance sharing storage) does.
 */
import type { Buffer } from 'node:buffer';
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

/** What a listener's acme block decides about serving; a reload may change any of it on a listener that stays open. */
export interface ManagedSettings {
  readonly storage: AcmeStorage;
  /** The CA's storage key (caKey of its directory URL): certificates are kept per CA. */
  readonly ca: string;
  readonly names: readonly string[];
  /** Asked for a name no certificate covers yet (on-demand TLS); resolves once it may have been obtained. */
  readonly onUnknownName?: (name: string) => Promise<boolean>;
}

export class ManagedCertificates {
  private settings: ManagedSettings;
  private names: Set<string>;
  private readonly served = new Map<string, ServedCertificate>();
  private readonly challenges = new Map<string, { at: number; context: SecureContext | undefined }>();
  private readonly protocol: SecureContextOptions;
  private readonly log: Logger;
  private readonly placeholderContext: SecureContext;
  /** The placeholder as PEM: the server's own default certificate when the listener has no certificate files. */
  readonly placeholderPem: { key: string; cert: string };
  private lastStamp: string | undefined;
  private readonly poller: NodeJS.Timeout;
  private polling: Promise<void> | undefined;

  private constructor(settings: ManagedSettings, options: { protocol: SecureContextOptions; log: Logger }, placeholder: { key: string; cert: string }) {
    this.settings = settings;
    this.names = new Set(settings.names);
    this.protocol = options.protocol;
    this.log = options.log;
    this.placeholderPem = placeholder;
    this.placeholderContext = createSecureContext({ ...options.protocol, ...placeholder });
    this.poller = setInterval(() => void this.refresh(), POLL_MS);
    this.poller.unref();
  }

  /** Loads what storage already holds, so a restart serves the stored certificates from the first handshake. */
  static async create(settings: ManagedSettings, options: { protocol: SecureContextOptions; log: Logger }): Promise<ManagedCertificates> {
    const placeholder = await selfSignedCertificate(settings.names.length > 0 ? settings.names.slice(0, 100) : ['velocity.invalid'], 'Velocity placeholder (certificate pending)');
    const managed = new ManagedCertificates(settings, options, placeholder);
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
    const ask = this.settings.onUnknownName;
    if (!ask || !(await ask(name))) return undefined;
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
      const pem = await this.settings.storage.read(keys.tlsAlpn01(name));
      const parts = pem ? splitBundle(pem.toString()) : undefined;
      context = parts ? createSecureContext({ ...this.protocol, ...parts }) : undefined;
    } catch (err) {
      this.log.error({ name, err: (err as Error).message }, 'TLS-ALPN-01 challenge certificate unreadable');
    }
    this.challenges.set(name, { at: Date.now(), context });
    if (this.challenges.size > 1000) this.challenges.clear();
    return context;
  }

  /**
   * The acme block as a reload left it: new names get the placeholder until theirs
   * arrive, a new storage connection is read from now on, and after a change of CA
   * the certificates of the new one are served as it issues them (until then, the
   * old CA's stay in use rather than the placeholder).
   */
  follow(settings: ManagedSettings): void {
    this.settings = settings;
    this.names = new Set(settings.names);
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
    // One reading of the settings for the whole pass: a reload in between forces the next pass.
    const { storage, ca } = this.settings;
    let stamp: string | undefined;
    try {
      stamp = await storage.stamp(keys.updated(ca));
    } catch (err) {
      this.log.warn({ storage: storage.description, err: (err as Error).message }, 'ACME storage unreadable; serving the certificates already loaded');
      return;
    }
    if (!force && stamp === this.lastStamp) return;
    this.lastStamp = stamp;
    const wanted = new Set([...this.names, ...this.served.keys()]);
    for (const name of wanted) {
      try {
        const stored = await readCertificate(storage, ca, name);
        if (!stored || this.served.get(name)?.pem.equals(stored.bundle)) continue;
        const context = createSecureContext({ ...this.protocol, cert: stored.cert, key: stored.key });
        this.served.set(name, { name, pem: stored.bundle, notAfter: new Date(stored.leaf.validTo), context });
      } catch (err) {
        // A broken file keeps the certificate already served (or the placeholder).
        this.log.error({ name, storage: storage.description, err: (err as Error).message }, 'stored ACME certificate not usable; the previous one stays in use');
      }
    }
  }
}
