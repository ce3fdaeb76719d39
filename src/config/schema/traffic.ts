/** Client IP, IP filters, rate limits, and where shared state lives. */
import { z } from 'zod';
import { parseCidr } from '../../cidr.ts';
import { positiveDuration, positiveInt, rate, secret } from '../../config-fields.ts';

export const cidr = () =>
  z.string({ error: 'expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32' }).transform((text, ctx) => {
    const parsed = parseCidr(text);
    if (!parsed) {
      ctx.addIssue({ code: 'custom', message: `"${text}" is not an IP address or CIDR range; expected e.g. 10.0.0.0/8, 192.168.1.7 or 2001:db8::/32` });
      return z.NEVER;
    }
    return parsed;
  });

export const ipFilterSchema = z.strictObject({
  /** When set, only these clients are let in. */
  allow: z.array(cidr()).default([]),
  /** Always refused, even when also allowed (deny beats allow). */
  deny: z.array(cidr()).default([]),
});

const keyPart = z.union([z.literal('client_ip'), z.literal('endpoint'), z.string().regex(/^header:[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'expected client_ip, endpoint or header:NAME')], {
  error: 'expected client_ip, endpoint or header:NAME',
});

export const rateLimitSchema = z.strictObject({
  /** Shown in the RateLimit-Policy header and logs. */
  name: z
    .string()
    .regex(/^[a-z0-9_-]+$/i, 'letters, digits, _ and - only')
    .optional(),
  /** Which requests the rule counts; all when empty. */
  methods: z.array(z.string().regex(/^[A-Z]+$/, 'an HTTP method in capitals, e.g. GET')).default([]),
  /** Path prefixes (`/api/`) or globs (`/api/*\/orders`, `*` within a segment, `**` across). */
  paths: z.array(z.string().startsWith('/', 'must start with /')).default([]),
  /** What is counted: client_ip, endpoint (method + matched path), header:NAME, or a combination. */
  key: z.array(keyPart).min(1).default(['client_ip']),
  rate: rate(),
  /** Requests allowed at once before the steady rate applies; default: one second's worth (at least 1). */
  burst: positiveInt().optional(),
  /** Send RateLimit headers on allowed responses too. */
  headers: z.boolean().default(false),
  /** Auto-ban: a client over the limit more than `after` times within `window` is blocked for `duration`. */
  ban: z.strictObject({ after: positiveInt(), window: positiveDuration().default(60_000), duration: positiveDuration().default(600_000) }).optional(),
});

export type RateLimitRule = z.output<typeof rateLimitSchema>;

const NODE_RE = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;

/** A Redis or Sentinel node, `host:port` (`[v6]:port`). */
const redisNode = () =>
  z.string({ error: 'expected host:port' }).transform((text, ctx) => {
    const m = NODE_RE.exec(text);
    const port = Number(m?.[3]);
    if (!m || port < 1 || port > 65535) {
      ctx.addIssue({ code: 'custom', message: `"${text}" is not a node address; expected HOST:PORT (e.g. 10.0.0.1:26379 or [2001:db8::1]:6379)` });
      return z.NEVER;
    }
    return { host: (m[1] ?? m[2]) as string, port };
  });

export type RedisNode = { host: string; port: number };

export const stateSchema = z.strictObject({
  store: z.enum(['memory', 'redis'], { error: 'expected memory or redis' }).default('memory'),
  /** One Redis (a single server, or a proxy in front of several). */
  url: z
    .string()
    .refine((u) => /^rediss?:\/\//.test(u) && URL.canParse(u), 'expected redis://host:port (or rediss://)')
    .optional(),
  /** Redis Sentinel: the sentinels to ask where the primary named `master` is; Velocity follows failovers. */
  sentinels: z.array(redisNode()).min(1, 'at least one sentinel').optional(),
  /** The name the sentinels monitor the primary under (`sentinel monitor NAME …`). */
  master: z.string().min(1).optional(),
  /** Redis Cluster: some of its nodes (the rest are discovered). */
  cluster: z.array(redisNode()).min(1, 'at least one node').optional(),
  /** With sentinels or cluster: the Redis nodes' ACL user and password (with url they go in the URL). */
  username: z.string().min(1).optional(),
  password: secret(z.string().min(1)).optional(),
  /** The sentinels' own password, when they have one (`requirepass` in sentinel.conf). */
  sentinel_password: secret(z.string().min(1)).optional(),
  /** When Redis is unreachable: open = count locally and let requests through; closed = refuse (429). */
  on_failure: z.enum(['open', 'closed']).default('open'),
  /** How long a Redis command may take before this instance falls back (and leaves Redis alone for a second). */
  timeout: positiveDuration().default(250),
  /** Key prefix, so several Velocity clusters can share one Redis. */
  prefix: z.string().default('velocity:'),
  /** Keys the local limiter table holds (16 bytes each, shared by all threads; memory is fixed). */
  local_table_size: z
    .number({ error: 'expected a whole number of slots' })
    .int('expected a whole number of slots')
    .min(64, 'at least 64 slots')
    .max(16_777_216, 'at most 16777216 slots (256 MB)')
    .default(65_536),
});

export type StateConfig = z.output<typeof stateSchema>;

/** `store: redis` names exactly one way to reach Redis; sentinels come with the master's name. */
export function checkRedisTarget(state: StateConfig, ctx: z.RefinementCtx): void {
  if (state.store !== 'redis') return;
  const given = (['url', 'sentinels', 'cluster'] as const).filter((k) => state[k] !== undefined);
  if (given.length !== 1) {
    const message = given.length === 0 ? 'store redis needs url (one Redis), sentinels (with master) or cluster' : `give only one of ${given.join(', ')}`;
    ctx.addIssue({ code: 'custom', message, path: [given[1] ?? 'url'] });
  }
  if (state.sentinels && !state.master) ctx.addIssue({ code: 'custom', message: 'sentinels need master: the name they monitor the primary under', path: ['master'] });
  if (state.url && (state.username || state.password))
    ctx.addIssue({ code: 'custom', message: 'with url, put the user and password in it (redis://user:password@host:port)', path: ['password'] });
}
