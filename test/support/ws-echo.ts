/**
 * A WebSocket echo backend (the `ws` package on a real socket, 127.0.0.1:0):
 * answers each message with `NAME:message`, and remembers the upgrade requests'
 * headers. Optionally over TLS (wss) with a given certificate.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { TestContext } from 'node:test';
import { WebSocketServer } from 'ws';

export interface WsEchoBackend {
  name: string;
  port: number;
  url: string;
  /** Open WebSocket connections now. */
  readonly open: number;
  /** Headers of every upgrade request seen. */
  readonly upgrades: IncomingHttpHeaders[];
  close(): Promise<void>;
}

export async function startWsEcho(t: Pick<TestContext, 'after'>, name: string, tls?: { cert: string; key: string }): Promise<WsEchoBackend> {
  const server: Server = tls
    ? (createHttpsServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }) as unknown as Server)
    : createHttpServer((_req, res) => res.end(`plain http from ${name}\n`));
  if (tls) server.on('request', (_req, res) => res.end(`plain https from ${name}\n`));
  const wss = new WebSocketServer({ server });
  const upgrades: IncomingHttpHeaders[] = [];
  wss.on('connection', (socket, req) => {
    upgrades.push(req.headers);
    socket.on('message', (data, isBinary) => socket.send(isBinary ? data : `${name}:${data.toString()}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  let closed: Promise<void> | undefined;
  const backend: WsEchoBackend = {
    name,
    port,
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    get open() {
      return wss.clients.size;
    },
    upgrades,
    close() {
      closed ??= new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
  t.after(() => backend.close());
  return backend;
}
