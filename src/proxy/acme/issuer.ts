/**
 * One order with an ACME CA through `acme-client`: the account (key kept in
 * storage), the challenge answers written where every instance's listeners read
 * them, and errors sorted into what an operator can act on. Scheduling,
 * backoff and locking are the manager's.
 */
import type { Buffer } from 'node:buffer';
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import { createRequire } from 'node:module';
import { rootCertificates } from 'node:tls';
import type AcmeClient from 'acme-client';
import type { AcmeConfig } from '../../config/schema/acme.ts';
import type { Logger } from '../../observe/logger.ts';
import { optionalModule } from '../../optional-module.ts';
import { type AcmeStorage, caKey, keys } from './storage.ts';

/** What went wrong, in words an operator acts on (also the `kind` label of the error metric). */
export const ACME_ERROR_KINDS = ['ca_unreachable', 'rate_limited', 'account', 'validation', 'ca_error', 'storage', 'lock'] as const;
export type AcmeErrorKind = (typeof ACME_ERROR_KINDS)[number];

export class AcmeError extends Error {
  readonly kind: AcmeErrorKind;
  /** The CA asked us to wait this long (Retry-After), when it said so. */
  readonly retryAfterMs: number | undefined;
  /** What the CA said, without our words around it. */
  readonly detail: string;

  constructor(kind: AcmeErrorKind, message: string, options: { retryAfterMs?: number; cause?: unknown; detail?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AcmeError';
    this.kind = kind;
    this.retryAfterMs = options.retryAfterMs;
    this.detail = options.detail ?? message;
  }
}

/** What the CA last said to us per origin: acme-client keeps only the problem's detail, we need its type and Retry-After. */
interface Heard {
  at: number;
  status?: number;
  problem?: string;
  detail?: string;
  retryAfterMs?: number;
  network?: string;
}
const heard = new Map<string, Heard>();
/** A CA's own trust (ca_root), per directory origin. */
const agents = new Map<string, HttpsAgent>();

type AxiosConfigLike = { url?: string; baseURL?: string; httpsAgent?: unknown; adapter?: unknown; timeout?: number };
type Adapter = (config: AxiosConfigLike) => Promise<{ status: number; headers: Record<string, unknown>; data: unknown }>;

/** acme-client, loaded when a config first has an acme block. */
const acmeClient = optionalModule<typeof AcmeClient>('acme-client', 'automatic HTTPS (acme)');

let installed = false;
/**
 * acme-client shares one axios instance. Its own retries are turned off (ours
 * back off per name and honour Retry-After without holding a lock for hours),
 * requests get a timeout, a private CA's trust, and a recorder of what the CA said.
 */
function installHooks(): void {
  if (installed) return;
  const acme = acmeClient();
  // The axios copy acme-client uses (its instance has no getAdapter of its own).
  const axiosOfAcmeClient = createRequire(import.meta.resolve('acme-client'))('axios') as { getAdapter(adapter: unknown): Adapter };
  installed = true;
  const settings = (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }).acmeSettings;
  settings.retryMaxAttempts = 0;
  acme.axios.defaults.timeout = 30_000;
  acme.axios.interceptors.request.use((config) => {
    const origin = new URL(config.url ?? '', config.baseURL).origin;
    const agent = agents.get(origin);
    if (agent) config.httpsAgent = agent;
    const adapter = axiosOfAcmeClient.getAdapter(config.adapter ?? acme.axios.defaults.adapter);
    {
      // acme-client makes every response a rejection (it validates statuses itself): a response is what the CA said, no response is the network.
      const note = (response: { status: number; headers: Record<string, unknown>; data: unknown }) => {
        if (response.status < 400) return;
        const data = response.data as { type?: string; detail?: string } | undefined;
        const retryAfter = Number(response.headers['retry-after']);
        heard.set(origin, { at: Date.now(), status: response.status, problem: data?.type, detail: data?.detail, retryAfterMs: retryAfter > 0 ? retryAfter * 1000 : undefined });
      };
      (config as unknown as { adapter: Adapter }).adapter = async (c) => {
        try {
          const response = await adapter(c);
          note(response);
          return response;
        } catch (err) {
          const response = (err as { response?: Parameters<typeof note>[0] }).response;
          if (response) note(response);
          else heard.set(origin, { at: Date.now(), network: (err as { code?: string }).code ?? (err as Error).message });
          throw err;
        }
      };
    }
    return config;
  });
}

/** Sorts an acme-client failure using what the CA said since `since`. */
export function classify(err: unknown, origin: string, since: number): AcmeError {
  if (err instanceof AcmeError) return err;
  const message = (err as Error)?.message ?? String(err);
  const last = heard.get(origin);
  const recent = last && last.at >= since ? last : undefined;
  if (recent?.network) return new AcmeError('ca_unreachable', `cannot reach the CA at ${origin}: ${recent.network}`, { cause: err });
  const problem = recent?.problem ?? '';
  // The problem type's last part (externalAccountRequired, rateLimited…) and the CA's own words.
  const detail = `${problem ? `${problem.split(':').pop()}: ` : ''}${recent?.detail ?? message}`;
  if (problem.endsWith(':rateLimited') || recent?.status === 429)
    return new AcmeError('rate_limited', `the CA refused: rate limited (${detail})`, { retryAfterMs: recent?.retryAfterMs, cause: err });
  if (/:(unauthorized|connection|dns|incorrectResponse|tls|caa|rejectedIdentifier)$/.test(problem) || /authorization|challenge|invalid status/i.test(message))
    return new AcmeError('validation', `validation failed: ${detail}`, { cause: err });
  if (/:(accountDoesNotExist|externalAccountRequired|unauthorized|malformed)$/.test(problem) && /account|key|JWS|signature/i.test(detail))
    return new AcmeError('account', `the CA refused the account: ${detail}`, { cause: err });
  if (recent?.status && recent.status >= 500) return new AcmeError('ca_unreachable', `the CA answered ${recent.status}: ${detail}`, { cause: err });
  return new AcmeError('ca_error', `the CA refused: ${detail}`, { retryAfterMs: recent?.retryAfterMs, cause: err, detail });
}

export interface Issued {
  /** PEM chain: leaf first. */
  cert: string;
  key: string;
}

/** Places orders with one CA for one storage; one account, created on first use. */
export class AcmeIssuer {
  readonly ca: string;
  readonly origin: string;
  private readonly config: AcmeConfig;
  private readonly storage: AcmeStorage;
  private readonly log: Logger;
  private client: AcmeClient.Client | undefined;

  constructor(config: AcmeConfig, storage: AcmeStorage, log: Logger) {
    installHooks();
    this.config = config;
    this.storage = storage;
    this.log = log;
    this.ca = caKey(config.ca);
    this.origin = new URL(config.ca).origin;
    if (config.ca_root) agents.set(this.origin, new HttpsAgent({ ca: [...rootCertificates, readFileSync(config.ca_root, 'utf8')], keepAlive: true, maxSockets: 8 }));
  }

  /** The account key from storage, made on first use. A key that is there but unusable is never replaced. */
  private async accountClient(): Promise<AcmeClient.Client> {
    if (this.client) return this.client;
    const where = `${this.storage.description}/${keys.accountKey(this.ca)}`;
    let key: Buffer | undefined;
    try {
      key = await this.storage.read(keys.accountKey(this.ca));
    } catch (err) {
      throw new AcmeError('storage', `cannot read the ACME account key ${where}: ${(err as Error).message}`, { cause: err });
    }
    if (key) {
      try {
        createPrivateKey(key);
      } catch (err) {
        throw new AcmeError(
          'account',
          `the ACME account key ${where} is not a valid PEM private key (${(err as Error).message}); fix or remove it (a new account is made when it is absent)`,
          {
            cause: err,
          },
        );
      }
    } else {
      key = await acmeClient().crypto.createPrivateEcdsaKey('P-256');
      await this.storage.write(keys.accountKey(this.ca), key);
      this.log.info({ ca: this.config.ca, key: where }, 'ACME account key created');
    }
    const client = new (acmeClient().Client)({
      directoryUrl: this.config.ca,
      accountKey: key,
      // Order and authorization polls start at 1 s (acme-client's 5 s first wait is most of a fast CA's issuance time).
      backoffMin: 1_000,
      backoffMax: 10_000,
      ...(this.config.eab ? { externalAccountBinding: { kid: this.config.eab.kid, hmacKey: this.config.eab.hmac } } : {}),
    });
    const since = Date.now();
    try {
      await client.createAccount({ termsOfServiceAgreed: true, ...(this.config.email ? { contact: [`mailto:${this.config.email}`] } : {}) });
    } catch (err) {
      const sorted = classify(err, this.origin, since);
      if (sorted.kind !== 'ca_error') throw sorted;
      const hint = /externalAccount/.test(sorted.detail) ? ' (set acme.eab to the key id and HMAC key the CA gave you)' : '';
      throw new AcmeError('account', `the CA refused the account: ${sorted.detail}${hint}`, { cause: err });
    }
    this.client = client;
    return client;
  }

  /** Orders a certificate for `name`; throws AcmeError. */
  async obtain(name: string): Promise<Issued> {
    const since = Date.now();
    try {
      const client = await this.accountClient();
      const privateKey = this.config.key_type === 'rsa' ? await acmeClient().crypto.createPrivateRsaKey(2048) : await acmeClient().crypto.createPrivateEcdsaKey('P-256');
      const [, csr] = await acmeClient().crypto.createCsr({ altNames: [name] }, privateKey);
      const written: string[] = [];
      const cert = await client.auto({
        csr,
        termsOfServiceAgreed: true,
        ...(this.config.email ? { email: this.config.email } : {}),
        challengePriority: [...this.config.challenges],
        // acme-client's own pre-check would fetch the name from here; the CA's validation is the one that counts.
        skipChallengeVerification: true,
        challengeCreateFn: async (authz, challenge, keyAuthorization) => {
          if (challenge.type === 'http-01') {
            const key = keys.http01(challenge.token);
            await this.storage.write(key, keyAuthorization);
            written.push(key);
          } else if ((challenge.type as string) === 'tls-alpn-01') {
            const [alpnKey, alpnCert] = await acmeClient().crypto.createAlpnCertificate(authz, keyAuthorization);
            const key = keys.tlsAlpn01(authz.identifier.value);
            await this.storage.write(key, `${alpnCert.toString()}\n${alpnKey.toString()}`);
            written.push(key);
          }
        },
        challengeRemoveFn: async () => {
          await Promise.all(written.splice(0).map((key) => this.storage.remove(key)));
        },
      });
      return { cert, key: privateKey.toString() };
    } catch (err) {
      if (!(err instanceof AcmeError)) this.client = undefined;
      throw classify(err, this.origin, since);
    }
  }
}
