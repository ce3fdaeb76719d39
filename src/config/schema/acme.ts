/**
 * `tls.acme` of an https listener: certificates obtained and renewed from an
 * ACME CA (Let's Encrypt by default), for the hosts named here or for every
 * exact host of the services.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { CertificateError, loadCaFile } from '../../certificates.ts';
import { positiveDuration, rate, secret } from '../../config-fields.ts';
import { hostPattern } from './service.ts';
import { filePath } from './upstream-tls.ts';

export const LETS_ENCRYPT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';
export const ACME_CHALLENGES = ['http-01', 'tls-alpn-01'] as const;
export type AcmeChallengeType = (typeof ACME_CHALLENGES)[number];

/** Where Caddy keeps its data too: $XDG_DATA_HOME, else ~/.local/share. */
export function defaultAcmeStorage(): string {
  return join(process.env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'velocity', 'acme');
}

/** A name a CA can issue for by HTTP-01 or TLS-ALPN-01: an exact DNS name (wildcards need DNS-01). */
export const exactHost = hostPattern.refine((h) => !h.includes('*'), { message: 'expected an exact host name (wildcards need the DNS-01 challenge, which Velocity does not do)' });

/** An http(s) URL (checked by URL parsing, so the JSON Schema needs no format vocabulary). */
const httpUrl = (message: string) =>
  z.string({ error: message }).refine((text) => {
    try {
      return /^https?:$/.test(new URL(text).protocol);
    } catch {
      return false;
    }
  }, message);

const acmeRetrySchema = z.strictObject({
  /** First wait after a failed attempt; doubled per failure (with jitter) up to `max`. */
  base: positiveDuration().default(60_000),
  max: positiveDuration().default(86_400_000),
});

export const acmeSchema = z
  .strictObject({
    /** Contact address for the CA's expiry and policy mail (optional at Let's Encrypt). */
    email: z
      .string()
      .regex(/^[^\s@]+@[^\s@]+\.[^\s@]+$/, 'expected an email address')
      .optional(),
    /** The CA's ACME directory URL. */
    ca: httpUrl('expected the https:// URL of an ACME directory').default(LETS_ENCRYPT_DIRECTORY),
    /** PEM bundle trusted for the CA's own API (a private CA); the system roots when absent. */
    ca_root: filePath('PEM CA').optional(),
    /** Challenge types to answer, in order of preference. */
    challenges: z
      .array(z.enum(ACME_CHALLENGES, { error: 'expected http-01 or tls-alpn-01' }))
      .min(1, 'at least one challenge type is needed')
      .default([...ACME_CHALLENGES])
      .refine((list) => new Set(list).size === list.length, { message: 'a challenge type is listed twice' }),
    /**
     * Directory for the account key, certificates, challenge answers and locks (share it between instances; a relative one is in the config
     * file's folder); $XDG_DATA_HOME/velocity/acme (else ~/.local/share/velocity/acme) when absent. For a fleet, `{ redis: { prefix } }` keeps them in the state section's Redis, `{ etcd: { prefix } }` in the etcd of config_source.
     */
    storage: z
      .union(
        [
          z.string().min(1, 'expected a directory path'),
          z
            .strictObject({
              redis: z.strictObject({ prefix: z.string().min(1).default('velocity:acme:') }).optional(),
              /** `prefix` default: the fleet's prefix + `/acme/`. */
              etcd: z
                .strictObject({
                  prefix: z
                    .string()
                    .regex(/^\/[\w./-]*\/$/, 'a key prefix such as /velocity/prod/acme/ (starts and ends with /)')
                    .optional(),
                })
                .optional(),
            })
            .refine((s) => (s.redis === undefined) !== (s.etcd === undefined), 'name one of redis or etcd'),
        ],
        { error: 'expected a directory path, { redis: {} } for the Redis of the state section, or { etcd: {} } for the etcd of config_source' },
      )
      .optional(),
    /** External account binding (ZeroSSL, Google, most commercial CAs): key id and base64url HMAC key. */
    eab: z
      .strictObject({
        kid: z.string().min(1, 'expected the key id the CA gave you'),
        // A refinement, not a pattern: the JSON Schema sees `${ENV}` references before they are replaced.
        hmac: secret(z.string()).refine((key) => /^[A-Za-z0-9_-]+={0,2}$/.test(key), 'expected the base64url HMAC key the CA gave you'),
      })
      .optional(),
    /** Names to obtain certificates for; by default every exact host of the services. */
    hosts: z.array(exactHost).min(1, 'list at least one host, or leave hosts out to use the services\u2019 hosts').optional(),
    /** Key of the certificates (the account key is always ECDSA P-256). */
    key_type: z.enum(['ecdsa', 'rsa'], { error: 'expected ecdsa (P-256) or rsa (2048 bits)' }).default('ecdsa'),
    retry: acmeRetrySchema.prefault({}),
    /** New orders this instance may place, across all names (the CA's own limits are also honoured). */
    order_rate: rate().default({ count: 20, periodMs: 3_600_000 }),
    /**
     * On-demand TLS: a name that no certificate covers is obtained at its first
     * handshake, when `ask` answers 2xx to GET ask?domain=NAME.
     */
    on_demand: z
      .strictObject({
        ask: httpUrl('expected the http(s):// URL of the endpoint that approves names'),
        /** Approved names obtained per period, at most. */
        rate: rate().default({ count: 10, periodMs: 60_000 }),
      })
      .optional(),
  })
  .superRefine((acme, ctx) => {
    if (acme.ca_root === undefined) return;
    try {
      loadCaFile(acme.ca_root);
    } catch (err) {
      if (!(err instanceof CertificateError)) throw err;
      ctx.addIssue({ code: 'custom', path: ['ca_root'], message: err.message });
    }
  });

export type AcmeConfig = z.output<typeof acmeSchema>;

/** The exact hosts of services (what an `acme` block without `hosts` obtains certificates for). */
export function serviceHosts(services: readonly { hosts: readonly string[] }[]): string[] {
  return [...new Set(services.flatMap((s) => s.hosts.filter((h) => h !== '*' && !h.includes('*'))))];
}

/** The names an acme block manages: its own list, else every exact host of the services. */
export function acmeHosts(acme: AcmeConfig, services: readonly { hosts: readonly string[] }[]): string[] {
  return acme.hosts ? [...new Set(acme.hosts)] : serviceHosts(services);
}

/** Storage in Redis or etcd needs the state section, or config_source, to say where that is (a config-wide check, called from the root schema). */
export function checkAcmeStorage(
  config: { listeners: readonly { type: string; tls?: { acme?: AcmeConfig } }[]; state: { store: string }; config_source?: unknown },
  ctx: z.RefinementCtx,
): void {
  for (const [i, listener] of config.listeners.entries()) {
    const storage = listener.tls?.acme?.storage;
    if (typeof storage !== 'object') continue;
    const path = ['listeners', i, 'tls', 'acme', 'storage'];
    if (storage.redis && config.state.store !== 'redis')
      ctx.addIssue({ code: 'custom', path, message: 'storage in redis uses the state section\u2019s Redis: set state.store to redis (with url, sentinels or cluster)' });
    if (storage.etcd && config.config_source === undefined)
      ctx.addIssue({ code: 'custom', path, message: 'storage in etcd uses the etcd of config_source: set config_source.etcd (see Running a fleet)' });
  }
}

/** An acme block without hosts needs services with exact hosts (a config-wide check, called from the root schema). */
export function checkAcmeHosts(
  config: { listeners: readonly { type: string; tls?: { acme?: AcmeConfig } }[]; services: readonly { hosts: readonly string[] }[] },
  ctx: z.RefinementCtx,
): void {
  for (const [i, listener] of config.listeners.entries()) {
    const acme = listener.tls?.acme;
    if (acme && !acme.on_demand && acmeHosts(acme, config.services).length === 0)
      ctx.addIssue({
        code: 'custom',
        path: ['listeners', i, 'tls', 'acme'],
        message: 'no host to obtain a certificate for: list them in hosts, or give the services exact hosts (not "*" or wildcards)',
      });
  }
}
