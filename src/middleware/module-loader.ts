/**
 * Custom middleware: `- module: ./my-middleware.ts` with `options:` names an ES
 * module (TypeScript or JavaScript, resolved against the config file's folder)
 * whose default export — or `createMiddleware` export — is a MiddlewareFactory,
 * the interface the built-ins implement. Loaded and checked with the config, so a
 * bad module is a config error at its `module:` line. Imported once per process.
 */
import { importFactory, type UserModuleKind, userModulePath } from '../user-module.ts';
import type { Middleware, MiddlewareContext, MiddlewareFactory } from './middleware.ts';

const loaded = new Map<string, MiddlewareFactory>();

const HOOKS = ['request', 'response', 'wrap', 'error'] as const;

const MIDDLEWARE_MODULE: UserModuleKind = { noun: 'middleware', exportName: 'createMiddleware', signature: '(options, context) => ({ request?(req), response?(req, head) })' };

/** Imports a middleware module and checks it makes a middleware from these options; throws saying what is wrong. */
export async function loadMiddlewareModule(specifier: string, baseDir: string, options: Record<string, unknown>, context: MiddlewareContext): Promise<MiddlewareFactory> {
  const path = userModulePath(specifier, baseDir);
  const factory = loaded.get(path) ?? (await importFactory<MiddlewareFactory>(path, MIDDLEWARE_MODULE));
  checkMiddleware(path, () => factory(options, context));
  loaded.set(path, factory);
  return factory;
}

function checkMiddleware(path: string, make: () => Middleware): void {
  let made: Middleware;
  try {
    made = make();
  } catch (err) {
    throw new Error(`middleware module ${path} failed to create a middleware: ${(err as Error).message}`);
  }
  if (!made || typeof made !== 'object') throw new Error(`middleware module ${path}: the factory must return an object with request(req) and/or response(req, head)`);
  const hooks = HOOKS.filter((h) => made[h] !== undefined);
  if (hooks.length === 0) throw new Error(`middleware module ${path}: the middleware has none of ${HOOKS.join(', ')}`);
  for (const h of hooks) if (typeof made[h] !== 'function') throw new Error(`middleware module ${path}: ${h} must be a function`);
}

/** The factory of a module loaded with the config (worker threads load it again before serving). */
export function loadedMiddlewareFactory(specifier: string, baseDir: string): MiddlewareFactory | undefined {
  return loaded.get(userModulePath(specifier, baseDir));
}
