/**
 * The admin listener's routing: every feature registers its routes here
 * (method, path pattern with :params, whether it changes anything). Auth is
 * applied in one place by the admin server from `mutates` and the listener's
 * address.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';

export interface AdminRequest {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Parsed JSON body (size-limited); undefined when there was none. */
  body: unknown;
}

export interface AdminRoute {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** e.g. `/api/v1/services/:service/servers/:server` */
  path: string;
  /** Changes state: always needs the token. */
  mutates: boolean;
  /** Readable without the token even off loopback (the dashboard's static page; never data). */
  public?: boolean;
  /** One line for the OpenAPI document. */
  summary: string;
  /** The JSON body it accepts (validated before `handle`), for the handler and the OpenAPI document. */
  body?: z.ZodType;
  /** Success status when not 200 (e.g. 201, 202). */
  status?: number;
  /** Returns a JSON-able value (sent with 200), or handles `res` itself and returns undefined. */
  handle(request: AdminRequest): unknown | Promise<unknown>;
}

/** An error with an HTTP status and the field it is about, sent as `{ error, field }`. */
export class AdminError extends Error {
  readonly status: number;
  readonly field: string | undefined;

  constructor(status: number, message: string, field?: string) {
    super(message);
    this.name = 'AdminError';
    this.status = status;
    this.field = field;
  }
}

interface CompiledRoute {
  route: AdminRoute;
  pattern: RegExp;
  names: string[];
}

export class AdminRouter {
  private readonly routes: CompiledRoute[] = [];
  /**
   * Resolves once the last change is live on every data-path thread. The admin
   * server awaits it after each mutating call, so an API answer means "applied everywhere".
   */
  readonly applied: () => Promise<void>;

  constructor(applied: () => Promise<void> = () => Promise.resolve()) {
    this.applied = applied;
  }

  add(...routes: AdminRoute[]): void {
    for (const route of routes) {
      const names: string[] = [];
      const source = route.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:(\w+)/g, (_m, name: string) => {
        names.push(name);
        return '([^/]+)';
      });
      this.routes.push({ route, pattern: new RegExp(`^${source}$`), names });
    }
  }

  list(): readonly AdminRoute[] {
    return this.routes.map((r) => r.route);
  }

  /** The route for a request, or which methods the path allows (for 405), or nothing (404). */
  match(method: string, path: string): { route: AdminRoute; params: Record<string, string> } | { allowed: string[] } | undefined {
    const allowed: string[] = [];
    for (const { route, pattern, names } of this.routes) {
      const m = pattern.exec(path);
      if (!m) continue;
      if (route.method !== method) {
        allowed.push(route.method);
        continue;
      }
      const params: Record<string, string> = {};
      names.forEach((name, i) => {
        params[name] = decodeURIComponent(m[i + 1] as string);
      });
      return { route, params };
    }
    return allowed.length > 0 ? { allowed } : undefined;
  }
}
