/**
 * Custom error pages (nginx error_page, Traefik Errors, Caddy handle_errors): an
 * answer of Velocity's own with a status in `status` (a 502 for a dead server, a
 * 429, a 401 of basic auth…) gets the body of a file or of a page a service
 * serves, keeping its status and x-velocity-error. With `upstream: true` a
 * server's own answers in the range are replaced too.
 */
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { z } from 'zod';
import { positiveDuration, statusRange } from '../config-fields.ts';
import type { ClientResponse } from '../proxy/client-response.ts';
import { withoutHeaders } from './head.ts';
import type { Middleware, MiddlewareContext, RequestView } from './middleware.ts';
import { ResponseDecorator } from './response-decorator.ts';
import { sendToService } from './subrequest.ts';

export const errorPagesOptions = z
  .strictObject({
    /** Statuses to replace: 502, 500-599, 4xx. */
    status: statusRange(),
    /** A file (relative to the config file) served as the page. */
    file: z.string().min(1).optional(),
    /** Or a service whose answer to `path` is the page ({status} is replaced). */
    service: z.string().optional(),
    path: z
      .string()
      .regex(/^\/[\x21-\x7e]*$/, 'a path starting with /')
      .default('/{status}.html'),
    timeout: positiveDuration().default(2_000),
    /** Also replace the servers' own answers with a status in the range. */
    upstream: z.boolean().default(false),
  })
  .refine((o) => (o.file === undefined) !== (o.service === undefined), { message: 'give either file or service' });

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.htm': 'text/html; charset=utf-8', '.json': 'application/json', '.txt': 'text/plain; charset=utf-8' };

export function errorPages(o: z.output<typeof errorPagesOptions>, context: MiddlewareContext): Middleware {
  const inRange = (status: number) => status >= o.status.min && status <= o.status.max;
  let page: (req: RequestView, status: number) => Promise<{ body: Buffer; type: string } | undefined>;
  if (o.file !== undefined) {
    const path = resolve(context.baseDir, o.file);
    // Read when the config is loaded: a missing file is a config error, and serving it costs no I/O.
    const body = readFileSync(path);
    const type = TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';
    page = async () => ({ body, type });
  } else {
    const service = o.service as string;
    page = async (req, status) => {
      const answer = await sendToService(
        context,
        service,
        { ...req, header: (n) => req.header(n), cookie: (n) => req.cookie(n) },
        {
          method: 'GET',
          path: o.path.replaceAll('{status}', String(status)),
          headers: { 'x-request-id': req.requestId, 'x-velocity-status': String(status) },
          body: null,
          timeout: o.timeout,
          maxBody: 1024 * 1024,
        },
      );
      if (answer instanceof Error || answer.status >= 300) {
        context.warn(`error page from service ${service}: ${answer instanceof Error ? answer.message : `it answered ${answer.status}`}; the plain error was sent`);
        return undefined;
      }
      const type = answer.headers['content-type'];
      return { body: answer.body, type: typeof type === 'string' ? type : 'text/html; charset=utf-8' };
    };
  }
  const middleware: Middleware = {
    async error(req, reply) {
      if (!inRange(reply.status)) return undefined;
      const found = await page(req, reply.status);
      if (!found) return undefined;
      return { ...reply, headers: [...withoutHeaders(reply.headers ?? [], BODY_HEADERS), 'content-type', found.type], body: found.body };
    },
  };
  if (o.upstream) middleware.wrap = (req, res) => new PageOnStatus(res, req, inRange, page);
  return middleware;
}

const BODY_HEADERS = ['content-type', 'content-length', 'content-encoding', 'transfer-encoding', 'etag', 'content-range'];

/**
 * A server's answer in the range is swallowed and the page written instead. The
 * page is fetched when the head arrives; the server's body is read and dropped.
 */
class PageOnStatus extends ResponseDecorator {
  private replacing = false;
  private ended = false;
  private headWritten = false;
  private readonly view: RequestView;
  private readonly inRange: (status: number) => boolean;
  private readonly page: (req: RequestView, status: number) => Promise<{ body: Buffer; type: string } | undefined>;
  constructor(
    inner: ClientResponse,
    req: RequestView,
    inRange: (status: number) => boolean,
    page: (req: RequestView, status: number) => Promise<{ body: Buffer; type: string } | undefined>,
  ) {
    super(inner);
    this.view = req;
    this.inRange = inRange;
    this.page = page;
  }
  override get headersSent(): boolean {
    return this.inner.headersSent || this.replacing;
  }
  override writeHead(status: number, message: string | undefined, headers: string[]): unknown {
    if (!this.inRange(status)) return this.inner.writeHead(status, message, headers);
    this.replacing = true;
    // The server's body is dropped either way; without a page (its service failed) the answer is empty.
    void this.page(this.view, status).then((found) => {
      if (this.inner.destroyed) return;
      const body = found?.body ?? Buffer.alloc(0);
      const list = [...withoutHeaders(headers, BODY_HEADERS), 'content-type', found?.type ?? 'text/plain; charset=utf-8', 'content-length', String(body.length)];
      this.inner.writeHead(status, message, list);
      if (body.length > 0) this.inner.write(body);
      this.headWritten = true;
      if (this.ended) this.inner.end();
    });
    return this;
  }
  override write(chunk: Uint8Array): boolean {
    return this.replacing ? true : this.inner.write(chunk);
  }
  override end(): unknown {
    if (!this.replacing || this.headWritten) return this.inner.end();
    this.ended = true;
    return this;
  }
}
