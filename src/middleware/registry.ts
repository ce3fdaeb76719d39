/**
 * Middleware names → factories and option schemas. One file per middleware; this
 * is the only list of them. The config schema of a middleware list, the checks at
 * load and the docs table derive from it.
 */
import { z } from 'zod';
import { suggest } from '../suggest.ts';
import { addPrefix, addPrefixOptions } from './add-prefix.ts';
import { basicAuth, basicAuthOptions } from './basic-auth.ts';
import { bodyLimit, bodyLimitOptions } from './body-limit.ts';
import { compress, compressOptions } from './compress.ts';
import { cors, corsOptions } from './cors.ts';
import { decompress, decompressOptions } from './decompress.ts';
import { errorPages, errorPagesOptions } from './error-pages.ts';
import { forwardAuth, forwardAuthOptions } from './forward-auth.ts';
import { headers, headersOptions } from './headers.ts';
import { inFlight, inFlightOptions } from './in-flight.ts';
import type { Middleware, MiddlewareContext } from './middleware.ts';
import { mirror, mirrorOptions } from './mirror.ts';
import { redirect, redirectOptions } from './redirect.ts';
import { replacePath, replacePathOptions } from './replace-path.ts';
import { securityHeaders, securityHeadersOptions } from './security-headers.ts';
import { split, splitOptions, splitServices } from './split.ts';
import { stripPrefix, stripPrefixOptions } from './strip-prefix.ts';

interface MiddlewareEntry {
  options: z.ZodType;
  create(options: Record<string, unknown>, context: MiddlewareContext): Middleware;
  /** Services the options name (checked to exist at load). */
  services?(options: Record<string, unknown>): string[];
  /** One line for the docs table. */
  summary: string;
  /** What the admin API shows of the options when not all of them (no password hashes). */
  view?(options: Record<string, unknown>): unknown;
}

/** Keeps each factory typed by its own option schema. */
function entry<S extends z.ZodType>(
  options: S,
  create: (o: z.output<S>, context: MiddlewareContext) => Middleware,
  summary: string,
  services?: (o: z.output<S>) => string[],
): MiddlewareEntry {
  return {
    options,
    summary,
    create: (o, context) => create(o as z.output<S>, context),
    ...(services ? { services: (o: Record<string, unknown>) => services(o as z.output<S>) } : {}),
  };
}

const MIDDLEWARE: Record<string, MiddlewareEntry> = {
  headers: entry(headersOptions, headers, 'set, add, remove request and response headers; values may hold client_ip, request_id and host placeholders'),
  security_headers: entry(securityHeadersOptions, securityHeaders, 'X-Content-Type-Options, X-Frame-Options, Referrer-Policy, CSP, HSTS presets'),
  strip_prefix: entry(stripPrefixOptions, stripPrefix, 'strip a path prefix; X-Forwarded-Prefix says which'),
  add_prefix: entry(addPrefixOptions, addPrefix, 'put a prefix before the path'),
  replace_path: entry(replacePathOptions, replacePath, 'rewrite the path by a regular expression with captures'),
  redirect: entry(redirectOptions, redirect, 'redirect by regex with captures, or to another scheme, host or port (301/302/307/308)'),
  compress: entry(compressOptions, compress, 'zstd, br, gzip by Accept-Encoding q-values, streamed with backpressure'),
  basic_auth: {
    ...entry(basicAuthOptions, basicAuth, 'HTTP Basic auth against bcrypt or argon2 hashes'),
    view: (o) => ({ ...o, users: Object.keys(o.users as object) }),
  },
  forward_auth: entry(forwardAuthOptions, forwardAuth, 'a subrequest to an auth service decides; fails closed with 503'),
  body_limit: entry(bodyLimitOptions, bodyLimit, 'refuse request bodies over a size with 413'),
  decompress: entry(decompressOptions, decompress, 'decode gzip/deflate/br/zstd request bodies before the server, bounded in size (413), 400 when corrupt'),
  in_flight: entry(inFlightOptions, inFlight, 'refuse with 429 past N requests in progress'),
  cors: entry(corsOptions, cors, 'answer CORS preflights from config; Access-Control-Allow-* on responses'),
  error_pages: entry(errorPagesOptions, errorPages, "replace Velocity's 4xx/5xx (optionally the servers') by a file or a service's page", (o) => (o.service ? [o.service] : [])),
  split: entry(splitOptions, split, 'weighted split between services; header/cookie rules; sticky by ip or cookie', splitServices),
  mirror: entry(mirrorOptions, mirror, 'copy a share of requests to a shadow service, fire and forget', (o) => [o.service]),
};

export function middlewareNames(): string[] {
  return Object.keys(MIDDLEWARE);
}

/** A middleware's options as the admin API shows them. */
export function middlewareView(config: MiddlewareConfig): unknown {
  const view = MIDDLEWARE[config.name]?.view;
  return view ? view(config.options) : config.options;
}

export function middlewareEntry(name: string): MiddlewareEntry | undefined {
  return MIDDLEWARE[name];
}

/** One entry of a middleware list as the config holds it once validated. */
export interface MiddlewareConfig {
  name: string;
  options: Record<string, unknown>;
  /** For `module:` entries: the custom middleware's file. */
  module?: string;
}

/** Issues of one middleware's options, with paths under its name and "did you mean" for unknown keys. */
function optionProblems(name: string, schema: z.ZodType, options: unknown): { path: PropertyKey[]; message: string }[] {
  const result = schema.safeParse(options ?? {});
  if (result.success) return [];
  const known = schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
  return result.error.issues.flatMap((issue) => {
    if (issue.code !== 'unrecognized_keys') return [{ path: issue.path, message: issue.message.replace(/^Invalid input: /, '') }];
    return issue.keys.map((key) => {
      const hint = suggest(key, known);
      return { path: [...issue.path, key], message: `unknown field "${key}"${hint ? ` (did you mean "${hint}"?)` : `; ${name} takes ${known.join(', ')}`}` };
    });
  });
}

/**
 * `- NAME: { options }` (one key, the middleware's name) or
 * `- module: ./my-middleware.ts` with optional `options:`.
 */
export const middlewareEntrySchema = z
  .record(z.string(), z.unknown(), { error: 'expected a middleware such as { strip_prefix: { prefixes: [/api] } }' })
  .superRefine((raw, ctx) => {
    const keys = Object.keys(raw);
    if ('module' in raw) {
      if (typeof raw.module !== 'string' || raw.module === '') ctx.addIssue({ code: 'custom', path: ['module'], message: 'expected the path of a middleware module' });
      for (const key of keys)
        if (key !== 'module' && key !== 'options') ctx.addIssue({ code: 'custom', path: [key], message: `unknown field "${key}"; a module entry takes module and options` });
      if (raw.options !== undefined && (typeof raw.options !== 'object' || raw.options === null || Array.isArray(raw.options)))
        ctx.addIssue({ code: 'custom', path: ['options'], message: 'expected a map of options' });
      return;
    }
    if (keys.length !== 1) {
      ctx.addIssue({ code: 'custom', message: `a middleware entry has one key, its name (one of ${middlewareNames().join(', ')}); write one list item per middleware` });
      return;
    }
    const name = keys[0] as string;
    const found = MIDDLEWARE[name];
    if (!found) {
      const hint = suggest(name, middlewareNames());
      ctx.addIssue({
        code: 'custom',
        path: [name],
        message: `unknown middleware "${name}"; ${hint ? `did you mean "${hint}"?` : `expected one of ${middlewareNames().join(', ')}, or module`}`,
      });
      return;
    }
    for (const problem of optionProblems(name, found.options, raw[name])) ctx.addIssue({ code: 'custom', path: [name, ...problem.path], message: problem.message });
  })
  .transform((raw): MiddlewareConfig => {
    if ('module' in raw) return { name: 'module', module: raw.module as string, options: (raw.options ?? {}) as Record<string, unknown> };
    const name = Object.keys(raw)[0] as string;
    // Problems were reported above; a failed parse must not throw here.
    const parsed = MIDDLEWARE[name]?.options.safeParse(raw[name] ?? {});
    return { name, options: (parsed?.success ? parsed.data : {}) as Record<string, unknown> };
  });

export const middlewareListSchema = z.array(middlewareEntrySchema);

/** The JSON Schema of one list entry, from the option schemas (built on demand: `velocity schema`, not startup). */
export function middlewareEntryJsonSchema(): Record<string, unknown> {
  const named = middlewareNames().map((name) => {
    const { $schema: _drop, ...options } = z.toJSONSchema((MIDDLEWARE[name] as MiddlewareEntry).options, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' });
    return {
      type: 'object',
      description: (MIDDLEWARE[name] as MiddlewareEntry).summary,
      properties: { [name]: { anyOf: [options, { type: 'null' }] } },
      required: [name],
      additionalProperties: false,
    };
  });
  const custom = {
    type: 'object',
    description: 'a custom middleware module',
    properties: { module: { type: 'string' }, options: { type: 'object' } },
    required: ['module'],
    additionalProperties: false,
  };
  return { anyOf: [...named, custom] };
}
