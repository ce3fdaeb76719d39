/**
 * The middleware of one route, made from its config: built-ins from the registry,
 * custom modules from the loader. A custom middleware that throws answers 500
 * (MIDDLEWARE_FAILED) and is reported; it never takes the process down.
 */
import type { Middleware, MiddlewareContext, Reply, RequestView } from './middleware.ts';
import { loadedMiddlewareFactory } from './module-loader.ts';
import { type MiddlewareConfig, middlewareEntry } from './registry.ts';

export interface MiddlewareChain {
  /** In the order written. */
  readonly items: readonly Middleware[];
  readonly names: readonly string[];
  /** Whether some item replaces error answers (error pages). */
  readonly answersErrors: boolean;
  readonly context: MiddlewareContext;
}

const FAILED: Reply = { status: 500, code: 'MIDDLEWARE_FAILED', headers: ['content-type', 'text/plain; charset=utf-8'], body: '500 Internal error\n' };

/** Undefined for an empty list: a route without middleware carries nothing. */
export function buildChain(configs: readonly MiddlewareConfig[], context: MiddlewareContext): MiddlewareChain | undefined {
  if (configs.length === 0) return undefined;
  const items = configs.map((c) => (c.module ? guarded(c.module, makeCustom(c, context), context) : makeBuiltIn(c, context)));
  return { items, names: configs.map((c) => c.module ?? c.name), answersErrors: items.some((m) => m.error !== undefined), context };
}

function makeBuiltIn(config: MiddlewareConfig, context: MiddlewareContext): Middleware {
  const entry = middlewareEntry(config.name);
  if (!entry) throw new Error(`unknown middleware "${config.name}"`);
  return entry.create(config.options, context);
}

function makeCustom(config: MiddlewareConfig, context: MiddlewareContext): Middleware {
  const factory = loadedMiddlewareFactory(config.module as string, context.baseDir);
  if (!factory) throw new Error(`middleware module ${config.module} was not loaded with the config`);
  return factory(config.options, context);
}

/** A custom middleware as the data path runs it: a throw is reported and answered, never propagated. */
function guarded(name: string, m: Middleware, context: MiddlewareContext): Middleware {
  const report = (hook: string, err: unknown) => context.warn(`middleware module ${name}: ${hook} threw: ${(err as Error)?.message ?? String(err)}`);
  const out: Middleware = {};
  const request = m.request;
  if (request)
    out.request = async (req) => {
      try {
        return await request.call(m, req);
      } catch (err) {
        report('request', err);
        return FAILED;
      }
    };
  const response = m.response;
  if (response)
    out.response = (req: RequestView, head) => {
      try {
        response.call(m, req, head);
      } catch (err) {
        report('response', err);
      }
    };
  if (m.wrap) out.wrap = m.wrap.bind(m);
  if (m.error) out.error = m.error.bind(m);
  return out;
}
