/**
 * WebSocket through the proxy: an HTTP/1.1 Upgrade request, routed and guarded
 * like any request, goes to a server chosen by the service's policy (another
 * server when the connect fails); after the server's 101 the two sockets are
 * piped both ways. The server counts the tunnel as in flight until it closes
 * (so least-connections sees it), silence in both directions past
 * `timeouts.tunnel` closes it, and shutdown waits for tunnels until its deadline.
 */
import type { Buffer } from 'node:buffer';
import type { ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { VelocityError } from '../errors.ts';
import { request as httpRequest } from '../node-http.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { clientGoneError } from '../upstream/attempt.ts';
import { connectFirst } from '../upstream/connect-first.ts';
import type { Lease } from '../upstream/lease.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import { tlsConnectOptions, upstreamTlsOptions } from '../upstream/tls.ts';
import type { RequestContext } from './context.ts';
import { classifyUpstreamError } from './forwarder.ts';
import { responseHeadersForClient } from './headers.ts';
import type { ProxyRequest } from './proxy-message.ts';
import { splice } from './splice.ts';

export function isWebSocketUpgrade(req: ProxyRequest): boolean {
  const upgrade = req.headers.upgrade;
  return req.method === 'GET' && typeof upgrade === 'string' && upgrade.toLowerCase() === 'websocket';
}

/** The open tunnels of one listener, so shutdown can wait for them and cut them at its deadline. */
export class TunnelSet {
  private readonly open = new Set<Duplex>();
  private emptied: (() => void) | undefined;

  add(client: Duplex): void {
    this.open.add(client);
    client.once('close', () => {
      this.open.delete(client);
      if (this.open.size === 0) this.emptied?.();
    });
  }

  get size(): number {
    return this.open.size;
  }

  close(deadline: number): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const cut = setTimeout(
        () => {
          for (const socket of this.open) socket.destroy();
        },
        Math.max(0, deadline - Date.now()),
      );
      this.emptied = () => {
        clearTimeout(cut);
        resolve();
      };
    });
  }
}

type Opened =
  | { kind: 'upgraded'; res: IncomingMessage; socket: Socket; head: Buffer }
  | { kind: 'response'; res: IncomingMessage }
  | { kind: 'failed'; error: Error & { code?: string }; sent: boolean };

/**
 * Tunnels an upgrade to a server of `service`. Resolves with the error to
 * answer with when no server took it, or undefined once it is handled.
 */
export async function proxyWebSocket(
  plane: DataPlane,
  ctx: RequestContext,
  service: ServiceRuntime,
  client: Duplex,
  head: Buffer,
  tunnels: TunnelSet,
): Promise<VelocityError | undefined> {
  const { req, record } = ctx;
  const headers = ctx.headersForUpstream(plane.trustsPeer(req));
  headers.push('connection', 'Upgrade', 'upgrade', req.headers.upgrade as string);
  const abort = new AbortController();
  const onClientGone = () => abort.abort(clientGoneError());
  client.once('close', onClientGone);
  try {
    const result = await connectFirst<{ opened: Exclude<Opened, { kind: 'failed' }>; ms: number }>({
      service,
      pick: (tried) => plane.select(service, ctx, tried, abort),
      connect: async (lease) => {
        const started = performance.now();
        const opened = await openUpstream(lease.server, req.url ?? '/', headers, service, abort.signal);
        if (opened.kind === 'failed') return { error: opened.error, code: classifyUpstreamError(opened.error), sent: opened.sent };
        return { connected: { opened, ms: performance.now() - started } };
      },
      stopped: () => abort.signal.aborted,
      onAttempt: (lease) => {
        record.server = lease.server.id;
      },
    });
    record.retries += result.retries;
    if (result.kind === 'refused') return result.error;
    if (result.kind === 'failed') return new VelocityError(result.code, undefined, { cause: result.error });
    if (result.kind === 'none') return new VelocityError('NO_HEALTHY_SERVER', undefined, { retryAfter: 1 });
    const { lease, value } = result;
    record.upstreamFirstByteMs = value.ms;
    record.upstreamMs = value.ms;
    client.removeListener('close', onClientGone);
    if (value.opened.kind === 'response') relayRefusal(ctx, lease, value.opened.res, value.ms);
    else tunnel(ctx, service, lease, client, head, value.opened, tunnels, value.ms);
    return undefined;
  } finally {
    client.removeListener('close', onClientGone);
  }
}

/** Sends the upgrade request to one server; resolves on its 101, its other answer, or the failure. */
function openUpstream(server: UpstreamServer, path: string, headers: string[], service: ServiceRuntime, signal: AbortSignal): Promise<Opened> {
  const { timeouts } = service.config;
  return new Promise<Opened>((resolve) => {
    const options: RequestOptions = { host: server.host, port: server.port, method: 'GET', path, headers, agent: false, setHost: false };
    const upstream: ClientRequest = server.tls ? httpsRequest({ ...options, ...tlsConnectOptions(upstreamTlsOptions(service.config.tls), server.host) }) : httpRequest(options);
    let connected = false;
    let settled = false;
    const fail = (code: string, message: string) => upstream.destroy(Object.assign(new Error(message), { code }));
    let timer = setTimeout(() => fail('UND_ERR_CONNECT_TIMEOUT', `connect timed out after ${timeouts.connect}ms`), timeouts.connect);
    const settle = (result: Opened) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(result);
    };
    const onAbort = () => upstream.destroy(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    upstream.once('socket', (socket: Socket) => {
      socket.once(server.tls ? 'secureConnect' : 'connect', () => {
        connected = true;
        clearTimeout(timer);
        timer = setTimeout(() => fail('UND_ERR_HEADERS_TIMEOUT', `no answer to the upgrade within ${timeouts.response_header}ms`), timeouts.response_header);
      });
    });
    upstream.once('upgrade', (res, socket, upHead) => settle({ kind: 'upgraded', res, socket, head: upHead }));
    upstream.once('response', (res) => settle({ kind: 'response', res }));
    upstream.once('error', (error) => settle({ kind: 'failed', error, sent: connected }));
    upstream.end();
  });
}

/** The server answered without upgrading (401, 404, …): pass its answer on and close. */
function relayRefusal(ctx: RequestContext, lease: Lease, res: IncomingMessage, ms: number): void {
  const { record } = ctx;
  const out = ctx.res;
  const status = res.statusCode ?? 502;
  record.status = status;
  out.writeHead(status, res.statusMessage, responseHeadersForClient(res.headers));
  const release = () => {
    lease.end({ kind: 'response', status, bytesOut: record.bytesOut, firstByteMs: ms, complete: res.complete }, ms);
  };
  // The server's answer is relayed as it comes, with backpressure.
  res.on('data', (chunk: Buffer) => {
    record.bytesOut += chunk.length;
    if (!out.write(chunk)) {
      res.pause();
      out.once('drain', () => res.resume());
    }
  });
  res.once('end', () => {
    out.end();
    release();
  });
  res.once('close', release);
  res.once('error', () => out.destroy());
}

function tunnel(
  ctx: RequestContext,
  service: ServiceRuntime,
  lease: Lease,
  client: Duplex,
  clientHead: Buffer,
  opened: Extract<Opened, { kind: 'upgraded' }>,
  tunnels: TunnelSet,
  ms: number,
): void {
  const { res, socket: upstream, head } = opened;
  const { record } = ctx;
  record.status = 101;
  let text = `HTTP/1.1 101 ${res.statusMessage || 'Switching Protocols'}\r\n`;
  for (let i = 0; i < res.rawHeaders.length; i += 2) text += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
  client.write(`${text}\r\n`);
  if (head.length > 0) client.write(head);
  if (clientHead.length > 0) upstream.write(clientHead);
  tunnels.add(client);

  splice(client, upstream, service.config.timeouts.tunnel, () => {
    record.bytesOut = upstream.bytesRead;
    lease.end({ kind: 'response', status: 101, bytesOut: record.bytesOut, firstByteMs: ms, complete: true }, ms);
  });
}
