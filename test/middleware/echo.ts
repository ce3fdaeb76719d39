/**
 * An in-process HTTP server for middleware tests that says what it received:
 * GET /anything → JSON { method, url, headers, bodyLength }. Also /status/N,
 * /text/N (N bytes of compressible text), ?delay=MS, and a log of requests.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Echo {
  url: string;
  port: number;
  /** Every request received, in order. */
  seen: { method: string; url: string; headers: IncomingMessage['headers']; bodyLength: number }[];
  close(): Promise<void>;
}

export const TEXT_UNIT = 'Velocity compresses this line of JSON-ish text: {"id": 12345, "ok": true}\n';

export function textOfLength(n: number): Buffer {
  const unit = Buffer.from(TEXT_UNIT);
  const out = Buffer.alloc(n);
  for (let at = 0; at < n; at += unit.length) unit.copy(out, at, 0, Math.min(unit.length, n - at));
  return out;
}

export async function startEcho(t: { after(fn: () => unknown): void }, handle?: (req: IncomingMessage, res: ServerResponse) => boolean): Promise<Echo> {
  const seen: Echo['seen'] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const bodyLength = chunks.reduce((n, c) => n + c.length, 0);
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodyLength });
      const url = new URL(req.url ?? '/', 'http://echo');
      const answer = () => {
        if (handle?.(req, res)) return;
        const status = /^\/status\/(\d{3})$/.exec(url.pathname);
        if (status) {
          res.writeHead(Number(status[1]), { 'content-type': 'text/plain' });
          return res.end(`server said ${status[1]}\n`);
        }
        const text = /^\/text\/(\d+)$/.exec(url.pathname);
        if (text) {
          const body = textOfLength(Number(text[1]));
          res.writeHead(200, { 'content-type': url.searchParams.get('type') ?? 'text/plain; charset=utf-8', 'content-length': body.length });
          return res.end(body);
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bodyLength }));
      };
      const delay = Number(url.searchParams.get('delay') ?? 0);
      if (delay > 0) setTimeout(answer, delay);
      else answer();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  t.after(close);
  return { url: `http://127.0.0.1:${port}`, port, seen, close };
}
