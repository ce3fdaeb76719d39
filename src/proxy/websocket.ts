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
import type { VelocityError } from '../errors.ts';
import { request as httpRequest } from '../node-http.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { type AttemptOutcome, clientGoneError } from '../upstream/attempt.ts';
import type { Lease } from '../upstream/lease.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import { tlsConnectOptions, upstreamTlsOptions } from '../upstream/tls.ts';
import { AttemptLoop, type Picked } from './attempt-loop.ts';
import type { RequestContext } from './context.ts';
import { classifyUpstreamError } from './forwarder.ts';
import { responseHeadersForClient } from './headers.ts';
import type { ProxyRequest } from './proxy-message.ts';
import type { AbortableTry, RequestAbort } from './request-abort.ts';
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
export function proxyWebSocket(
  plane: DataPlane,
  ctx: RequestContext,
  service: ServiceRuntime,
  client: Duplex,
  head: Buffer,
  tunnels: TunnelSet,
): Promise<VelocityError | undefined> {
  return new Promise((resolve) => new WebSocketConnect(plane, ctx, client, head, tunnels, resolve).start(service));
}

/**
 * An upgrade's tries, over the attempt loop: send the upgrade to a server the policy picks, another
 * one when the connect fails before the request went out; the server's 101 (or its refusal) is the
 * answer, after which the tunnel holds the server until it closes.
 */
class WebSocketConnect extends AttemptLoop {
  private readonly plane: DataPlane;
  private readonly ctx: RequestContext;
  private readonly client: Duplex;
  private readonly clientHead: Buffer;
  private readonly tunnels: TunnelSet;
  private readonly resolve: (error: VelocityError | undefined) => void;
  private headers: string[] = [];
  private opened: UpgradeTry | undefined = undefined;

  constructor(plane: DataPlane, ctx: RequestContext, client: Duplex, clientHead: Buffer, tunnels: TunnelSet, resolve: (error: VelocityError | undefined) => void) {
    super(plane.pools.sweep, ctx.abort, true);
    this.plane = plane;
    this.ctx = ctx;
    this.client = client;
    this.clientHead = clientHead;
    this.tunnels = tunnels;
    this.resolve = resolve;
  }

  start(service: ServiceRuntime): void {
    const { ctx, plane } = this;
    const { req } = ctx;
    this.headers = ctx.headersForUpstream(plane.trustsPeer(req));
    this.headers.push('connection', 'Upgrade', 'upgrade', req.headers.upgrade as string);
    this.serve(service, ctx.record.time);
    const abort = this.abort;
    this.client.once('close', () => abort.abort(clientGoneError()));
    this.startTries(service.config.timeouts.total);
  }

  protected acquire(tried: ReadonlySet<UpstreamServer>): Picked {
    return this.plane.select(this.service as ServiceRuntime, this.ctx, tried, this.ctx.abort);
  }

  protected tryOn(lease: Lease): void {
    this.ctx.record.server = lease.server.id;
    const attempt = new UpgradeTry(this, lease.server, this.ctx.req.url ?? '/', this.headers, this.service as ServiceRuntime);
    this.opened = attempt;
    attempt.start(this.abort);
  }

  /** An upgrade that reached the server is not sent again. */
  protected mayResend(): boolean {
    return false;
  }

  protected tryEnded(_lease: Lease, _outcome: AttemptOutcome | undefined, at: number): void {
    this.ctx.record.upstreamMs = at - this.upstreamStart;
  }

  protected answered(outcome: Extract<AttemptOutcome, { kind: 'response' }>, lease: Lease): void {
    const { ctx } = this;
    const opened = (this.opened as UpgradeTry).result as Exclude<Opened, { kind: 'failed' }>;
    ctx.record.upstreamFirstByteMs = outcome.firstByteMs;
    if (opened.kind === 'response') relayRefusal(ctx, lease, opened.res, outcome.firstByteMs);
    else tunnel(ctx, this.service as ServiceRuntime, lease, this.client, this.clientHead, opened, this.tunnels, outcome.firstByteMs);
    this.finish(undefined);
  }

  protected cutShort(): void {}

  protected override retrying(): void {
    this.ctx.record.retries++;
  }

  protected done(error: VelocityError | undefined): void {
    this.resolve(error);
  }

  protected logCrash(err: unknown): void {
    this.plane.log.error({ err, requestId: this.ctx.record.requestId }, 'unexpected error on the WebSocket path');
  }
}

/** One upgrade request to one server; resolves on its 101, its other answer, or the failure. */
class UpgradeTry implements AbortableTry {
  private readonly loop: AttemptLoop;
  private readonly server: UpstreamServer;
  private readonly path: string;
  private readonly headers: string[];
  private readonly service: ServiceRuntime;
  private readonly started = performance.now();
  result: Opened | undefined = undefined;
  private cancel: ((reason: Error) => void) | undefined = undefined;

  constructor(loop: AttemptLoop, server: UpstreamServer, path: string, headers: string[], service: ServiceRuntime) {
    this.loop = loop;
    this.server = server;
    this.path = path;
    this.headers = headers;
    this.service = service;
  }

  start(control: RequestAbort): void {
    if (control.reason) return void this.settled({ kind: 'failed', error: control.reason, sent: false });
    control.startTry(this);
    this.cancel = openUpstream(this.server, this.path, this.headers, this.service, (opened) => {
      control.endTry(this);
      this.settled(opened);
    });
  }

  abort(reason: Error & { code?: string }): void {
    this.cancel?.(reason);
  }

  private settled(opened: Opened): void {
    this.result = opened;
    const firstByteMs = performance.now() - this.started;
    if (opened.kind === 'failed') {
      const { error, sent } = opened;
      this.loop.attemptSettled({ kind: 'failed', code: classifyUpstreamError(error), error, responseStarted: false, requestSent: sent });
    } else {
      const status = opened.kind === 'upgraded' ? 101 : (opened.res.statusCode ?? 502);
      this.loop.attemptSettled({ kind: 'response', status, bytesOut: 0, firstByteMs, complete: true });
    }
  }
}

/** Sends the upgrade request to one server; `done` hears once of its 101, its other answer, or the failure. Returns what cancels it. */
function openUpstream(server: UpstreamServer, path: string, headers: string[], service: ServiceRuntime, done: (opened: Opened) => void): (reason: Error) => void {
  const { timeouts } = service.config;
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
    done(result);
  };
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
  return (reason) => upstream.destroy(reason);
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
