/**
 * The demo and test backend (`velocity backend`), after the original project's
 * test server. Every path answers 200 with a small body and `x-backend: NAME`.
 *   /health          200 (or 503 after /_health/down, until /_health/up)
 *   /status/CODE     answers CODE
 *   /echo            streams the request body back
 *   /bytes/N         N bytes of a repeating pattern
 *   /headers         the request headers as JSON
 *   /_count          how many requests this backend has seen, and how its /bytes answers
 *                    are going: body bytes handed to their sockets, answers under way (JSON)
 *   ?delay=MS        waits MS before answering (also --delay / env DURATION in seconds)
 */
import { Buffer } from 'node:buffer';
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer } from '../node-http.ts';

export interface BackendOptions {
  port: number;
  host?: string;
  name?: string;
  delayMs?: number;
}

export interface RunningBackend {
  server: Server;
  port: number;
  close(): Promise<void>;
}

const PATTERN = Buffer.alloc(64 * 1024, 'velocity-demo-backend-0123456789\n');

export function startBackend(options: BackendOptions): Promise<RunningBackend> {
  const name = options.name ?? `backend-${options.port}`;
  let count = 0;
  let healthy = true;
  // A test sees a transfer stall (the proxy paused this backend) as bytes that stop moving.
  const transfers = { bytes_sent: 0, streaming: 0 };
  const server = createServer((req, res) => {
    count++;
    const url = new URL(req.url ?? '/', 'http://backend');
    const delay = Number(url.searchParams.get('delay') ?? options.delayMs ?? 0);
    res.setHeader('x-backend', name);
    const answer = () => {
      const path = url.pathname;
      if (path === '/health') {
        res.statusCode = healthy ? 200 : 503;
        return res.end(healthy ? 'ok\n' : 'down\n');
      }
      if (path === '/_health/down' || path === '/_health/up') {
        healthy = path.endsWith('/up');
        return res.end(`${healthy ? 'up' : 'down'}\n`);
      }
      if (path === '/_count') {
        res.setHeader('content-type', 'application/json');
        return res.end(JSON.stringify({ name, count, ...transfers }));
      }
      const status = /^\/status\/(\d{3})$/.exec(path);
      if (status) {
        req.resume();
        res.statusCode = Number(status[1]);
        return res.end(`status ${status[1]} from ${name}\n`);
      }
      if (path === '/echo') {
        res.setHeader('content-type', req.headers['content-type'] ?? 'application/octet-stream');
        req.pipe(res);
        return;
      }
      const bytes = /^\/bytes\/(\d+)$/.exec(path);
      if (bytes) return sendBytes(res, Number(bytes[1]), transfers);
      if (path === '/headers') {
        res.setHeader('content-type', 'application/json');
        return res.end(JSON.stringify({ headers: req.headers, rawHeaders: req.rawHeaders }));
      }
      // Drain any body so keep-alive connections stay usable.
      req.resume();
      res.setHeader('content-type', 'text/plain');
      res.end(`hello from ${name}\n`);
    };
    if (delay > 0) setTimeout(answer, delay);
    else answer();
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      const port = (server.address() as AddressInfo).port;
      resolve({
        server,
        port,
        close: () =>
          new Promise((r) => {
            server.close(() => r());
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** Sends `total` bytes as the client takes them (waiting for 'drain'), counted in `transfers`. */
function sendBytes(res: ServerResponse, total: number, transfers: { bytes_sent: number; streaming: number }): void {
  res.setHeader('content-type', 'application/octet-stream');
  res.setHeader('content-length', total);
  transfers.streaming++;
  res.once('close', () => transfers.streaming--);
  let left = total;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, PATTERN.length);
      left -= n;
      transfers.bytes_sent += n;
      if (!res.write(n === PATTERN.length ? PATTERN : PATTERN.subarray(0, n))) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}
