/**
 * Checks at load that every middleware of a config can be made: custom modules
 * load and implement the interface, files exist, named services exist. Problems
 * come back with their field path, for a file:line:column error.
 */
import { undiciClient } from '../optional-module.ts';
import { buildChain } from './chain.ts';
import type { MiddlewareContext } from './middleware.ts';
import { loadMiddlewareModule } from './module-loader.ts';
import { type MiddlewareConfig, middlewareEntry } from './registry.ts';

interface CheckedService {
  name: string;
  middleware: readonly MiddlewareConfig[];
  routes: readonly { middleware: readonly MiddlewareConfig[] }[];
}

export async function middlewareProblems(services: readonly CheckedService[], baseDir: string): Promise<{ path: PropertyKey[]; message: string }[]> {
  const names = new Set(services.map((s) => s.name));
  const context: MiddlewareContext = {
    service: () => undefined,
    // Read only by middleware that sends requests: undici loads for configs that have such middleware.
    get http() {
      return undiciClient().getGlobalDispatcher();
    },
    baseDir,
    warn: () => {},
  };
  const problems: { path: PropertyKey[]; message: string }[] = [];
  const check = async (list: readonly MiddlewareConfig[], at: PropertyKey[]) => {
    for (const [k, m] of list.entries()) {
      const path = [...at, k, m.module !== undefined ? 'module' : m.name];
      try {
        if (m.module !== undefined) await loadMiddlewareModule(m.module, baseDir, m.options, context);
        for (const name of middlewareEntry(m.name)?.services?.(m.options) ?? [])
          if (!names.has(name)) throw new Error(`no service named "${name}"; expected one of ${[...names].join(', ')}`);
        buildChain([m], context);
      } catch (err) {
        problems.push({ path, message: (err as Error).message });
      }
    }
  };
  for (const [i, s] of services.entries()) {
    await check(s.middleware, ['services', i, 'middleware']);
    for (const [j, r] of s.routes.entries()) await check(r.middleware, ['services', i, 'routes', j, 'middleware']);
  }
  return problems;
}
