/**
 * WebSocket through the proxy: an HTTP/1.1 Upgrade request, routed and guarded
 * like any request, goes to a server chosen by the service's policy (another
 * server when the connect fails) on a socket of its own, its answer read by
 * Velocity's response parser; after the server's 101 the two sockets are
 * piped both ways. The server counts the tunnel as in flight until it closes
 * (so least-connections sees it), silence in both directions past
 * `timeouts.tunnel` closes it, and shutdown waits for tunnels until its deadline.
 */
import type { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { VelocityError } from '../errors.ts';
import type { RetryRefusal } from '../observe/events.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { type AttemptOutcome, clientGoneError } from '../upstream/attempt.ts';
import type { DeadlineSweep } from '../upstream/deadline-sweep.ts';
import type { Lease } from '../upstream/lease.ts';
import type { ResponseHead } from '../upstream/response-parser.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import { tlsConnectOptions, upstreamTlsOptions } from '../upstream/tls.ts';
import { type UpgradeListener, UpgradeRequest, type UpgradeTarget } from '../upstream/upgrade-request.ts';
import { AttemptLoop, type Picked } from './attempt-loop.ts';
import type { RequestContext } from './context.ts';
import { classifyUpstreamError } from './forwarder.ts';
import { responseHeadersFromRaw } from './headers.ts';
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

/**
 * Tunnels an upgrade to a server of `service`. Resolves with the error to
 * answer with when no server took it, or undefined once it is handled.
 * `abortOnClose` (client.abort_on_close): a client's FIN before the server
 * answered gives the upgrade up, as it does an HTTP request.
 */
export function proxyWebSocket(
  plane: DataPlane,
  ctx: RequestContext,
  service: ServiceRuntime,
  client: Duplex,
  head: Buffer,
  tunnels: TunnelSet,
  abortOnClose = true,
): Promise<VelocityError | undefined> {
  return new Promise((resolve) => new WebSocketConnect(plane, ctx, client, head, tunnels, resolve).start(service, abortOnClose));
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

  start(service: ServiceRuntime, abortOnClose: boolean): void {
    const { ctx, plane } = this;
    const { req } = ctx;
    this.headers = ctx.headersForUpstream(plane.trustsPeer(req));
    this.headers.push('connection', 'Upgrade', 'upgrade', req.headers.upgrade as string);
    this.serve(service, ctx.record.time);
    this.client.once('close', this.clientGone);
    if (abortOnClose) this.client.once('end', this.clientGone);
    this.startTries(service.config.timeouts.total);
  }

  /** The client closed, or half-closed before the answer (abortOnClose): the upgrade is given up. */
  private readonly clientGone = (): void => this.abort.abort(clientGoneError());

  protected acquire(tried: ReadonlySet<UpstreamServer>): Picked {
    return this.plane.select(this.service as ServiceRuntime, this.ctx, tried, this.ctx.abort);
  }

  protected tryOn(lease: Lease): void {
    const server = lease.server;
    const config = (this.service as ServiceRuntime).config;
    this.ctx.record.server = server.id;
    const target: UpgradeTarget = {
      server,
      tls: server.tls ? tlsConnectOptions(upstreamTlsOptions(config.tls), server.host) : undefined,
      connectTimeout: config.timeouts.connect,
      responseHeaderTimeout: config.timeouts.response_header,
    };
    const attempt = new UpgradeTry(this, target, upgradeHead(this.ctx.req.url ?? '/', this.headers), this.plane.pools.sweep);
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
    const attempt = this.opened as UpgradeTry;
    // Answered: from here a FIN is the tunnel's to pass on (or the refusal's to see through).
    this.client.removeListener('end', this.clientGone);
    ctx.record.upstreamFirstByteMs = outcome.firstByteMs;
    if (outcome.status !== 101) attempt.relayRefusal(ctx, lease);
    else tunnel(ctx, this.service as ServiceRuntime, lease, this.client, this.clientHead, attempt, this.tunnels, outcome.firstByteMs);
    this.finish(undefined);
  }

  /** The client left (or half-closed) before the answer: nothing will be written to it. */
  protected cutShort(): void {
    this.client.destroy();
  }

  protected override retrying(): void {
    this.ctx.record.retries++;
  }

  protected override retryRefused(why: RetryRefusal): void {
    this.ctx.record.retryDenied = why;
  }

  protected done(error: VelocityError | undefined): void {
    this.resolve(error);
  }

  protected logCrash(err: unknown): void {
    this.plane.log.error({ err, requestId: this.ctx.record.requestId }, 'unexpected error on the WebSocket path');
  }
}

/**
 * One upgrade request to one server: the loop hears of its 101, its other answer, or its failure. A refusal's
 * body is then relayed to the client as it comes, with backpressure, and the server given back at its end.
 */
class UpgradeTry implements AbortableTry, UpgradeListener {
  private readonly loop: AttemptLoop;
  private readonly request: UpgradeRequest;
  private readonly started = performance.now();
  private control: RequestAbort | undefined = undefined;
  /** The server's answer: its head, and for a 101 the socket and the bytes after the head. */
  head: ResponseHead | undefined = undefined;
  socket: Socket | undefined = undefined;
  early: Buffer | undefined = undefined;
  /** Where a refusal goes, once the loop has it answered. */
  private relay: { ctx: RequestContext; lease: Lease } | undefined = undefined;
  private waitingForDrain = false;

  constructor(loop: AttemptLoop, target: UpgradeTarget, head: string, sweep: DeadlineSweep) {
    this.loop = loop;
    this.request = new UpgradeRequest(target, head, sweep, this);
  }

  start(control: RequestAbort): void {
    if (control.reason) return void this.failed(control.reason, false);
    this.control = control;
    control.startTry(this);
    this.request.start();
  }

  abort(reason: Error & { code?: string }): void {
    this.request.abort(reason);
  }

  private answered(head: ResponseHead): void {
    this.head = head;
    this.control?.endTry(this);
    const firstByteMs = performance.now() - this.started;
    this.loop.attemptSettled({ kind: 'response', status: head.status, bytesOut: 0, firstByteMs, complete: true });
  }

  upgraded(head: ResponseHead, socket: Socket, early: Buffer): void {
    this.socket = socket;
    this.early = early;
    this.answered(head);
  }

  refused(head: ResponseHead): void {
    this.answered(head);
  }

  /** The server answered without upgrading (401, 404, …): its head to the client now, its body as it comes. */
  relayRefusal(ctx: RequestContext, lease: Lease): void {
    const head = this.head as ResponseHead;
    ctx.record.status = head.status;
    ctx.res.writeHead(head.status, head.reason || undefined, responseHeadersFromRaw(head.headers));
    this.relay = { ctx, lease };
  }

  refusalBody(chunk: Buffer): boolean {
    const relay = this.relay;
    if (!relay) return true;
    relay.ctx.record.bytesOut += chunk.length;
    const out = relay.ctx.res;
    if (out.write(chunk)) return true;
    if (!this.waitingForDrain) {
      this.waitingForDrain = true;
      out.once('drain', () => {
        this.waitingForDrain = false;
        this.request.resumeRefusal();
      });
    }
    return false;
  }

  refusalEnd(complete: boolean): void {
    const relay = this.relay;
    if (!relay) return;
    const { ctx, lease } = relay;
    if (complete) ctx.res.end();
    else ctx.res.destroy();
    lease.end();
  }

  failed(error: Error & { code?: string }, sent: boolean): void {
    this.control?.endTry(this);
    this.loop.attemptSettled({ kind: 'failed', code: classifyUpstreamError(error), error, responseStarted: false, requestSent: sent });
  }
}

/** The upgrade request's head: the request line, the client's headers as the server gets them, the blank line. */
function upgradeHead(path: string, headers: readonly string[]): string {
  let text = `GET ${path} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${text}\r\n`;
}

function tunnel(ctx: RequestContext, service: ServiceRuntime, lease: Lease, client: Duplex, clientHead: Buffer, attempt: UpgradeTry, tunnels: TunnelSet, ms: number): void {
  const head = attempt.head as ResponseHead;
  const upstream = attempt.socket as Socket;
  const early = attempt.early as Buffer;
  const { record } = ctx;
  record.status = 101;
  client.write(upgradeAnswer(head));
  if (early.length > 0) client.write(early);
  if (clientHead.length > 0) upstream.write(clientHead);
  tunnels.add(client);

  splice(client, upstream, service.config.timeouts.tunnel, () => {
    record.bytesOut = upstream.bytesRead;
    lease.end({ kind: 'response', status: 101, bytesOut: record.bytesOut, firstByteMs: ms, complete: true }, ms);
  });
}

/** The server's 101 as the client gets it: its reason and its header lines (Connection: Upgrade and Upgrade among them). */
function upgradeAnswer(head: ResponseHead): string {
  let text = `HTTP/1.1 101 ${head.reason || 'Switching Protocols'}\r\n`;
  const headers = head.headers;
  for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${text}\r\n`;
}
