/**
 * The admin listener: a separate HTTP server for the API, metrics and dashboard.
 * Changes always need the bearer token; when the listener is not on loopback,
 * everything does (and start refuses a public address without a token).
 */
import { Buffer } from 'node:buffer';
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ListenAddress } from '../config-fields.ts';
import { createServer } from '../node-http.ts';
import type { Logger } from '../observe/logger.ts';
import { ListenError } from '../proxy/listener.ts';
import { AdminError, type AdminRouter } from './router.ts';

const MAX_BODY = 1024 * 1024;
/** How much of an oversized body is read (and discarded) to answer 413 cleanly; beyond it the connection is cut. */
const DRAIN_LIMIT = 16 * MAX_BODY;

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.') || host === '::ffff:127.0.0.1';
}

export interface AdminServer {
  readonly address: ListenAddress;
  readonly server: Server;
  close(): Promise<void>;
}

/** `token` is asked on every request: a reload that changes admin.token applies at once. */
export async function startAdminServer(address: ListenAddress, token: () => string | undefined, router: AdminRouter, log: Logger): Promise<AdminServer> {
  if (!isLoopback(address.host) && !token()) {
    throw new Error(
      `admin.listen is ${address.host}:${address.port}, which is not loopback, and admin.token is not set: set a token (e.g. token: \${VELOCITY_ADMIN_TOKEN}) or listen on 127.0.0.1`,
    );
  }
  let current: { token: string | undefined; expected: Buffer | undefined } = { token: undefined, expected: undefined };
  const expectedToken = () => {
    const now = token();
    if (now !== current.token) current = { token: now, expected: now ? Buffer.from(now) : undefined };
    return current.expected;
  };
  const authorized = (req: IncomingMessage): boolean => {
    const expected = expectedToken();
    if (!expected) return false;
    const header = req.headers.authorization ?? '';
    const given = Buffer.from(header.startsWith('Bearer ') ? header.slice(7) : '');
    // Constant time: compare equal-length buffers, and always do the comparison.
    const same = given.length === expected.length && timingSafeEqual(given, expected);
    return same;
  };
  const readAll = !isLoopback(address.host);

  const server = createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => {
      log.error({ err, path: req.url }, 'admin request failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const found = router.match(req.method ?? 'GET', url.pathname);
    if (!found) return sendJson(res, 404, { error: `no such endpoint: ${req.method} ${url.pathname}` });
    if ('allowed' in found) {
      res.setHeader('allow', found.allowed.join(', '));
      return sendJson(res, 405, { error: `method ${req.method} not allowed; allowed: ${found.allowed.join(', ')}` });
    }
    const { route, params } = found;
    if ((route.mutates || (readAll && !route.public)) && !authorized(req)) {
      res.setHeader('www-authenticate', 'Bearer realm="velocity-admin"');
      return sendJson(res, 401, { error: expectedToken() ? 'missing or wrong bearer token' : 'changes need admin.token to be set in the config' });
    }
    let body: unknown;
    try {
      body = await readJsonBody(req);
      if (route.body) {
        const parsed = route.body.safeParse(body ?? {});
        if (!parsed.success) {
          const issue = parsed.error.issues[0];
          const field = issue?.code === 'unrecognized_keys' ? issue.keys.join(', ') : (issue?.path.join('.') ?? '');
          const message =
            issue?.code === 'unrecognized_keys' ? `unknown field ${issue.keys.map((k) => `"${k}"`).join(', ')}` : `${field || 'body'}: ${issue?.message ?? 'invalid'}`;
          throw new AdminError(400, message, field || undefined);
        }
        body = parsed.data;
      }
      const result = await route.handle({ req, res, params, query: url.searchParams, body });
      if (route.mutates) await router.applied();
      if (result !== undefined && !res.headersSent) sendJson(res, route.status ?? 200, result);
    } catch (err) {
      if (err instanceof AdminError) return sendJson(res, err.status, { error: err.message, ...(err.field ? { field: err.field } : {}) });
      throw err;
    }
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new ListenError(address, err)));
    // SO_REUSEPORT like the data listeners, so a takeover's new process can open it beside the old one.
    server.listen({ port: address.port, host: address.host, reusePort: true }, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  return {
    address: { host: bound.address, port: bound.port },
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.setHeader('cache-control', 'no-store');
  res.end(body);
}

async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  if (req.method === 'GET' || req.method === 'HEAD') return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    // Past the limit the rest is read and discarded (up to DRAIN_LIMIT), so the client reads the 413
    // instead of a reset connection; leaving the loop early destroys the socket.
    if (size > DRAIN_LIMIT) break;
    if (size <= MAX_BODY) chunks.push(chunk as Buffer);
  }
  if (size > MAX_BODY) throw new AdminError(413, `request body over ${MAX_BODY} bytes`);
  if (size === 0) return undefined;
  const text = Buffer.concat(chunks).toString('utf8');
  const type = req.headers['content-type'] ?? '';
  if (!type.includes('json')) {
    // Some endpoints take YAML (validate/reload a posted config); they read `raw` themselves.
    return { raw: text };
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new AdminError(400, `malformed JSON: ${(err as Error).message}`);
  }
}
