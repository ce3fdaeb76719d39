/**
 * A custom middleware: API keys from the config. A request without a known
 * `x-api-key` is answered 401 here; a known one goes on with the key replaced by
 * the client's name (`x-api-client`), which the response carries too.
 *
 * Use it from a config file (the path is relative to that file):
 *   middleware:
 *     - module: ./custom-middleware.ts
 *       options: { keys: { k-123: mobile-app, k-456: partner } }
 *
 * The module is loaded and checked when the config is: a factory that throws (a
 * missing option) is a config error at the `module:` line.
 */
// In your own project: import type { MiddlewareFactory } from 'velocity-lb';
import type { MiddlewareFactory } from '../src/index.ts';

const createMiddleware: MiddlewareFactory = (options) => {
  const keys = new Map(Object.entries((options.keys ?? {}) as Record<string, string>));
  if (keys.size === 0) throw new Error('options.keys must map at least one API key to a client name');
  return {
    request(req) {
      const client = keys.get(req.header('x-api-key') ?? '');
      if (!client) return { status: 401, headers: ['content-type', 'text/plain'], body: 'unknown API key\n' };
      req.removeHeader('x-api-key');
      req.setHeader('x-api-client', client);
      return undefined;
    },
    response(req, head) {
      const client = req.header('x-api-client');
      if (client) head.headers.push('x-api-client', client);
    },
  };
};

export default createMiddleware;
