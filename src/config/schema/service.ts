/** A service: which requests it takes (hosts, paths), its servers, and how it balances them. */
import { z } from 'zod';
import { policyNames, policyOptionProblems, policyOptionsSchema } from '../../balancer/registry.ts';
import { listenAddress, nonNegativeInt, positiveInt, requestPath } from '../../config-fields.ts';
import { suggest } from '../../suggest.ts';
import { autoscaleSchema, processSchema } from './discovery.ts';
import { grpcSchema, http2SessionsSchema } from './grpc.ts';
import { serviceKnobsShape } from './resilience.ts';
import { routingShape } from './routes.ts';
import { stickySchema } from './sticky.ts';
import { ipFilterSchema, rateLimitSchema } from './traffic.ts';
import { upstreamTlsSchema } from './upstream-tls.ts';

export const serverUrl = () =>
  z.string({ error: 'expected a URL such as http://127.0.0.1:9001' }).transform((text, ctx) => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      ctx.addIssue({ code: 'custom', message: `"${text}" is not a URL; expected e.g. http://127.0.0.1:9001` });
      return z.NEVER;
    }
    if (url.protocol === 'tcp:') {
      // Servers of `mode: tcp` services: tcp://HOST:PORT (no path; the port is required).
      if (!url.port || (url.pathname !== '' && url.pathname !== '/') || url.search || url.hash || url.username) {
        ctx.addIssue({ code: 'custom', message: `"${text}" must be tcp://HOST:PORT, with a port and nothing after it` });
        return z.NEVER;
      }
      return `tcp://${url.host}`;
    }
    if (url.protocol === 'h2c:') {
      // HTTP/2 without TLS ("prior knowledge"): h2c://HOST:PORT.
      if (!url.port || (url.pathname !== '' && url.pathname !== '/') || url.search || url.hash || url.username) {
        ctx.addIssue({ code: 'custom', message: `"${text}" must be h2c://HOST:PORT, with a port and nothing after it` });
        return z.NEVER;
      }
      return `h2c://${url.host}`;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      ctx.addIssue({ code: 'custom', message: `unsupported scheme "${url.protocol}"; expected http://, https://, h2c:// or (for mode: tcp) tcp://` });
      return z.NEVER;
    }
    if (url.pathname !== '/' || url.search || url.hash || url.username) {
      ctx.addIssue({ code: 'custom', message: `"${text}" must be an origin only (scheme, host, port), without path, query or credentials` });
      return z.NEVER;
    }
    return url.origin;
  });

/** A server written as an object; also what the admin API accepts to add one. */
export const serverObjectSchema = z.strictObject({
  url: serverUrl(),
  weight: positiveInt().default(1),
  /** Concurrent requests this server takes; more wait in the service queue. */
  max_connections: nonNegativeInt().optional(),
  /** A stable name for logs and metrics; defaults to host:port. */
  name: z
    .string()
    .regex(/^[\w.:-]+$/, 'letters, digits, _ . : - only')
    .optional(),
  /** Health-check path for this server when it differs from the service's `health.path`. */
  health_path: requestPath().optional(),
  /** Speak HTTP/2 to this https:// server (agreed by ALPN); h2c:// servers always do. */
  http2: z.boolean().default(false),
});

export const serverSchema = z.union(
  [
    serverUrl().transform((url) => ({
      url,
      weight: 1,
      max_connections: undefined as number | undefined,
      name: undefined as string | undefined,
      health_path: undefined as string | undefined,
      http2: false,
    })),
    serverObjectSchema,
  ],
  { error: 'expected a URL string or { url, weight }' },
);

const policyNameSchema = z
  .string()
  .meta({ enum: policyNames() })
  .superRefine((name, ctx) => {
    if (!policyNames().includes(name)) {
      const hint = suggest(name, policyNames());
      ctx.addIssue({ code: 'custom', message: `unknown policy "${name}"; expected one of ${policyNames().join(', ')}${hint ? ` (did you mean "${hint}"?)` : ''}` });
    }
  });

/**
 * `policy: least-connections`, `policy: { name: header-hash, header: x-user }`
 * or `policy: { module: ./my-policy.js, options: {...} }`.
 */
export const policySchema = z
  .union([
    policyNameSchema.transform((name) => ({ name, options: {} as Record<string, unknown> })),
    z.looseObject({ name: policyNameSchema }).transform(({ name, ...options }) => ({ name, options: options as Record<string, unknown> })),
    z
      .strictObject({ module: z.string().min(1), options: z.record(z.string(), z.unknown()).default({}) })
      .transform((m) => ({ name: 'module', module: m.module, options: m.options })),
  ])
  .superRefine((policy, ctx) => {
    for (const issue of policyOptionProblems(policy.name, policy.options)) ctx.addIssue({ ...issue, path: [...issue.path] } as never);
  })
  .transform((policy) => {
    // Options that failed were reported above; a failed parse must not throw here.
    const parsed = policyOptionsSchema(policy.name)?.safeParse(policy.options);
    return parsed?.success ? { ...policy, options: parsed.data as Record<string, unknown> } : policy;
  });

export type PolicyConfig = z.output<typeof policySchema>;

export const hostPattern = z
  .string()
  .transform((h) => h.trim().toLowerCase())
  .refine((h) => h === '*' || /^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/.test(h), {
    message: 'expected a host name, "*.example.com" or "*"',
  });

export const serviceSchema = z
  .strictObject({
    name: z.string({ error: 'expected a service name' }).regex(/^[a-zA-Z0-9][\w.-]*$/, 'letters, digits, _ . - only, starting with a letter or digit'),
    hosts: z.array(hostPattern).default(['*']),
    paths: z.array(z.string().startsWith('/', 'a path prefix must start with /')).default(['/']),
    policy: policySchema.prefault('round-robin'),
    servers: z.array(serverSchema).default([]),
    /** Keep a client on the server it first got, through a signed cookie (any policy). */
    sticky: stickySchema.optional(),
    ip_filter: ipFilterSchema.prefault({}),
    rate_limits: z.array(rateLimitSchema).default([]),
    /** Whether this service's requests go to the access log and the log store. */
    access_log: z.boolean().default(true),
    /** Local backend processes Velocity runs and follows (see Servers everywhere). */
    process: processSchema.optional(),
    autoscale: autoscaleSchema.optional(),
    /** `http` (the default) routes requests by host and path; `tcp` balances raw connections accepted on `listen`. */
    mode: z.enum(['http', 'tcp'], { error: 'expected http or tcp' }).default('http'),
    /** Where a `mode: tcp` service accepts connections. */
    listen: listenAddress().optional(),
    /** PROXY protocol header sent first on each connection to a server of a `mode: tcp` service. */
    proxy_protocol: z.enum(['off', 'v1', 'v2'], { error: 'expected off, v1 or v2' }).default('off'),
    /** TLS toward https:// servers: verification on unless `insecure`. */
    tls: upstreamTlsSchema.prefault({}),
    /** Pass WebSocket upgrades through to the servers. */
    websocket: z.boolean().default(true),
    /** HTTP/2 connections to h2c:// and `http2: true` servers (see gRPC and HTTP/2 to servers). */
    http2_sessions: http2SessionsSchema.prefault({}),
    /** gRPC calls: which methods may be retried on UNAVAILABLE. */
    grpc: grpcSchema.prefault({}),
    /** More conditions, routes inside the service, and middleware (see docs/routes-and-middleware.md). */
    ...routingShape,
    ...serviceKnobsShape,
  })
  .superRefine(checkMode);

/** Fields that only make sense in one mode, and servers whose scheme fits the mode. */
function checkMode(
  service: {
    mode: 'http' | 'tcp';
    listen?: unknown;
    proxy_protocol: string;
    health: { type: string };
    servers: { url: string; http2: boolean }[];
    middleware: readonly { name: string }[];
    routes: readonly { middleware: readonly { name: string }[] }[];
  },
  ctx: z.RefinementCtx,
): void {
  const tcp = service.mode === 'tcp';
  if (tcp && service.listen === undefined) ctx.addIssue({ code: 'custom', path: ['listen'], message: 'a mode: tcp service needs listen: HOST:PORT' });
  if (!tcp && service.listen !== undefined)
    ctx.addIssue({ code: 'custom', path: ['listen'], message: 'listen is for mode: tcp services; HTTP services share the top-level listeners' });
  if (!tcp && service.proxy_protocol !== 'off') ctx.addIssue({ code: 'custom', path: ['proxy_protocol'], message: 'proxy_protocol is for mode: tcp services' });
  if (tcp && (service.health.type === 'http' || service.health.type === 'grpc'))
    ctx.addIssue({ code: 'custom', path: ['health', 'type'], message: `a mode: tcp service can use health type tcp or none, not ${service.health.type}` });
  const http2 = service.servers.map((s) => s.url.startsWith('h2c://') || s.http2);
  if (!tcp && http2.includes(true) && http2.includes(false))
    ctx.addIssue({
      code: 'custom',
      path: ['servers'],
      message: "a service's servers all speak HTTP/2 (h2c:// or http2: true) or all HTTP/1.1; put them in two services",
    });
  if (!tcp && http2.includes(true)) checkHttp2Middleware(service, ctx);
  if (service.health.type === 'grpc' && !tcp && http2.includes(false))
    ctx.addIssue({ code: 'custom', path: ['health', 'type'], message: 'health type grpc needs HTTP/2 servers (h2c:// or https:// with http2: true)' });
  service.servers.forEach((server, i) => {
    if (server.http2 && !server.url.startsWith('https://'))
      ctx.addIssue({ code: 'custom', path: ['servers', i, 'http2'], message: `http2: true is for https:// servers; use h2c://HOST:PORT for HTTP/2 without TLS` });
    const isTcp = server.url.startsWith('tcp://');
    if (tcp !== isTcp) {
      ctx.addIssue({
        code: 'custom',
        path: ['servers', i],
        message: tcp ? `a mode: tcp service needs tcp://HOST:PORT servers, not ${server.url}` : `${server.url} is for mode: tcp services; expected http://, https:// or h2c://`,
      });
    }
  });
}

/** Middleware that cannot work in front of HTTP/2 servers, and why. */
const NOT_FOR_HTTP2: Record<string, string> = {
  body_limit: 'reads a body of unknown length (every gRPC call) into memory before forwarding, which would stall streaming calls',
  mirror: 'sends its copies over HTTP/1.1 and only for bodies held in memory',
  decompress: 'reads a compressed body into memory before forwarding (gRPC compresses messages itself, with grpc-encoding)',
};

/** The service's and its routes' middleware, where the servers speak HTTP/2 (gRPC): refused when it cannot apply. */
function checkHttp2Middleware(service: { middleware: readonly { name: string }[]; routes: readonly { middleware: readonly { name: string }[] }[] }, ctx: z.RefinementCtx): void {
  const check = (list: readonly { name: string }[], at: (string | number)[]) =>
    list.forEach((m, i) => {
      const why = NOT_FOR_HTTP2[m.name];
      if (why) ctx.addIssue({ code: 'custom', path: [...at, i, m.name], message: `${m.name} ${why}; this service's servers speak HTTP/2 (h2c:// or http2: true)` });
    });
  check(service.middleware, ['middleware']);
  for (const [j, route] of service.routes.entries()) check(route.middleware, ['routes', j, 'middleware']);
}

export type ServiceConfig = z.output<typeof serviceSchema>;
export type ServerConfig = ServiceConfig['servers'][number];
