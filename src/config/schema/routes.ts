/**
 * What a service (or a route inside it) matches beyond hosts and path prefixes,
 * the routes inside a service, and the middleware each runs. Spread into the
 * service schema as `routingShape`. Values stay plain data (regexes as text,
 * CIDRs as text): the config crosses to worker threads and into the admin API.
 */
import { z } from 'zod';
import { parseCidr } from '../../cidr.ts';
import { regexText } from '../../config-fields.ts';
import { middlewareListSchema } from '../../middleware/registry.ts';

/** A header or query value condition: exact text, `{ present: true|false }` or `{ regex: "…" }`. */
export const valueCondition = z.union([z.string(), z.strictObject({ present: z.boolean() }), z.strictObject({ regex: regexText() })], {
  error: 'expected a value to match exactly, { present: true|false } or { regex: "…" }',
});

const METHOD = z
  .string()
  .regex(/^[A-Za-z]+$/, 'expected an HTTP method such as GET')
  .transform((m) => m.toUpperCase());

const cidrText = z.string({ error: 'expected a CIDR such as 10.0.0.0/8' }).refine((text) => parseCidr(text) !== undefined, {
  message: 'not an IP address or CIDR range; expected e.g. 10.0.0.0/8, 192.168.1.7 or 2001:db8::/32',
});

/** Conditions that must all hold, on top of hosts and path prefixes. */
export const matchSchema = z.strictObject({
  methods: z.array(METHOD).min(1).optional(),
  /** Header name → condition (names are case-insensitive). */
  headers: z
    .record(
      z.string().transform((n) => n.toLowerCase()),
      valueCondition,
    )
    .optional(),
  /** Query parameter name → condition. */
  query: z.record(z.string(), valueCondition).optional(),
  /** The client address (after trusted_proxies) is in one of these ranges. */
  client_ip: z.array(cidrText).min(1).optional(),
  /** The path (without the query) matches this regular expression. */
  path_regex: regexText().optional(),
});

export type MatchConfig = z.output<typeof matchSchema>;

export const routeSchema = z.strictObject({
  /** Shown in logs, warnings and the admin API; defaults to SERVICE#INDEX. */
  name: z
    .string()
    .regex(/^[\w.:-]+$/, 'letters, digits, _ . : - only')
    .optional(),
  /** Path prefixes of this route; the service's when absent. */
  paths: z.array(z.string().startsWith('/', 'a path prefix must start with /')).optional(),
  match: matchSchema.optional(),
  /** Run after the service's own middleware, in the order written. */
  middleware: middlewareListSchema.default([]),
});

export type RouteConfig = z.output<typeof routeSchema>;

export const routingShape = {
  /** Extra conditions for the service's own route (hosts + paths). */
  match: matchSchema.optional(),
  /** Middleware of every request to this service, in the order written. */
  middleware: middlewareListSchema.default([]),
  /** Routes inside the service: their own paths, conditions and middleware. */
  routes: z.array(routeSchema).default([]),
};
