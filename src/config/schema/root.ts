/** The whole config file. Sections for later features plug in here. */
import { z } from 'zod';
import { type ListenAddress, listenAddress, nonNegativeInt, positiveDuration, positiveInt, secret, size } from '../../config-fields.ts';
import { checkAcmeHosts, checkAcmeStorage } from './acme.ts';
import { dockerSchema } from './discovery.ts';
import { configSourceSchema } from './fleet.ts';
import { listenerSchema } from './listeners.ts';
import { accessLogSchema, logStoreSchema, tracingSchema } from './observe.ts';
import { probesSchema } from './probes.ts';
import { serviceKnobsSchema } from './resilience.ts';
import { serviceSchema } from './service.ts';
import { checkRedisTarget, cidr, ipFilterSchema, rateLimitSchema, stateSchema } from './traffic.ts';

export const clientSchema = z.strictObject({
  /** Time a client has to send the complete request head (slowloris guard) → 408. */
  header_timeout: positiveDuration().default(10_000),
  /** Time for the whole request body to arrive → 408. */
  body_timeout: positiveDuration().default(60_000),
  /** Idle keep-alive connections are closed after this. */
  keepalive_timeout: positiveDuration().default(5_000),
  /** Largest request head (request line + headers) → 431. */
  max_header_size: size().default(16 * 1024),
  /** Open client connections per listener (per thread); more are refused. 0 = unlimited. */
  max_connections: nonNegativeInt().default(10_000),
  /**
   * Request header names with `_`: drop them (nginx's default), reject the request (400), or allow
   * them. Look-alikes of Content-Length, Transfer-Encoding, Host and Connection are never forwarded.
   */
  underscore_headers: z.enum(['drop', 'reject', 'allow']).default('drop'),
  /**
   * A client that closes its sending side (FIN) after its request, before its answer started, has
   * given up: the request leaves the queue or its server attempt is cancelled (499), as nginx
   * (proxy_ignore_client_abort off) and Pingora do. false: a half-closed client still gets its answer.
   */
  abort_on_close: z.boolean().default(true),
});

export const adminSchema = z.strictObject({
  enabled: z.boolean().default(true),
  listen: listenAddress().default({ host: '127.0.0.1', port: 9090 }),
  /**
   * Bearer token for changes (and for everything when not on loopback). Use ${ENV_VAR}. Empty means
   * none (changes are refused), so `${VELOCITY_ADMIN_TOKEN:-}` works whether or not the variable is set.
   */
  token: secret(z.string().meta({ pattern: '^(?:.{16,})?$' }))
    .refine((t) => t === '' || t.length >= 16, 'an admin token must be at least 16 characters (or empty for none)')
    .transform((t) => t || undefined)
    .optional(),
});

export const configSchema = z
  .strictObject({
    /** Plain HTTP/1.1 listeners. Default 0.0.0.0:8000, unless `listeners` or TCP services say where to listen. */
    listen: z.union([listenAddress().transform((a) => [a]), z.array(listenAddress())]).optional(),
    /** Typed listeners: https (TLS, SNI, HTTP/2), http (optionally with h2c), redirect (HTTP → HTTPS). */
    listeners: z.array(listenerSchema).default([]),
    /** Event-loop threads for the data path: a number, or `auto` for one per core. */
    workers: z.union([z.literal('auto'), positiveInt()], { error: 'expected "auto" or a whole number ≥ 1' }).default(1),
    /** Time in-flight requests get to finish on SIGTERM/SIGINT before connections are cut. */
    shutdown_timeout: positiveDuration().default(30_000),
    client: clientSchema.prefault({}),
    admin: adminSchema.prefault({}),
    /** /livez and /readyz: what readiness needs, the shutdown grace, optional paths on the listeners. */
    probes: probesSchema.prefault({}),
    /** Follow containers through the Docker (or Podman) Engine API (see Servers everywhere). */
    docker: dockerSchema.optional(),
    /** Per-request access log lines (see Observability). */
    access_log: accessLogSchema.prefault({}),
    /** The queryable access-log store; absent = none. */
    logs: logStoreSchema.optional(),
    metrics: z.strictObject({ enabled: z.boolean().default(true) }).prefault({}),
    /** W3C trace context and OTLP span export (see Tracing). */
    tracing: tracingSchema.prefault({}),
    /** Peers whose X-Forwarded-For / Forwarded headers are believed (see Traffic control). */
    trusted_proxies: z.array(cidr()).default([]),
    ip_filter: ipFilterSchema.prefault({}),
    rate_limits: z.array(rateLimitSchema).default([]),
    /** Where rate-limit counters, the blocklist and bans live: memory (this instance) or redis (shared). */
    state: stateSchema.prefault({}).superRefine(checkRedisTarget),
    /** Values for every service that doesn't set its own. */
    defaults: z.looseObject({}).default({}),
    services: z.array(serviceSchema).min(1, 'at least one service is needed'),
    /** Shared config from etcd for a fleet of instances (see Running a fleet); absent = this file only. */
    config_source: configSourceSchema.optional(),
  })
  .superRefine(checkAddressConflicts)
  .superRefine(checkAcmeHosts)
  .superRefine(checkAcmeStorage)
  .transform(({ listen, ...rest }) => ({
    listen: listen ?? (rest.listeners.length === 0 && rest.services.some((s) => s.mode === 'http') ? [{ host: '0.0.0.0', port: 8000 }] : []),
    ...rest,
  }));

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '']);

/** Two listeners on one port fail at start with EADDRINUSE: say so at validation, naming both. */
function checkAddressConflicts(
  config: {
    listen?: ListenAddress[];
    listeners: { listen: ListenAddress }[];
    services: { listen?: ListenAddress | undefined }[];
    admin: { enabled: boolean; listen: ListenAddress };
  },
  ctx: z.RefinementCtx,
): void {
  const used: { address: ListenAddress; path: (string | number)[] }[] = [];
  const add = (address: ListenAddress, path: (string | number)[]) => {
    if (address.port !== 0) {
      const clash = used.find(
        (u) => u.address.port === address.port && (u.address.host === address.host || WILDCARD_HOSTS.has(u.address.host) || WILDCARD_HOSTS.has(address.host)),
      );
      if (clash) ctx.addIssue({ code: 'custom', path, message: `port ${address.port} is already used by ${formatPath(clash.path)}` });
    }
    used.push({ address, path });
  };
  for (const [i, a] of (config.listen ?? []).entries()) add(a, ['listen', i]);
  for (const [i, l] of config.listeners.entries()) add(l.listen, ['listeners', i, 'listen']);
  for (const [i, s] of config.services.entries()) if (s.listen) add(s.listen, ['services', i, 'listen']);
  if (config.admin.enabled) add(config.admin.listen, ['admin', 'listen']);
}

function formatPath(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/**
 * Names that must be unique within a list. Checked on the raw input, beside the
 * schema, so a duplicate is reported even when other fields have errors too.
 */
export function duplicateNames(raw: unknown): { path: (string | number)[]; message: string }[] {
  const services = (raw as { services?: unknown })?.services;
  if (!Array.isArray(services)) return [];
  const seen = new Map<string, number>();
  const found: { path: (string | number)[]; message: string }[] = [];
  services.forEach((service, i) => {
    const name = (service as { name?: unknown })?.name;
    if (typeof name !== 'string') return;
    const first = seen.get(name);
    if (first !== undefined) found.push({ path: ['services', i, 'name'], message: `duplicate service name "${name}" (first at services[${first}])` });
    else seen.set(name, i);
  });
  return found;
}

/** Validates a top-level `defaults` block alone so its errors point at it, not at each service. */
export const defaultsSchema = serviceKnobsSchema.partial();

export type Config = z.output<typeof configSchema>;
export type ClientConfig = Config['client'];
