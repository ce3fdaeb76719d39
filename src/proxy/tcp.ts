/**
 * Layer-4 balancing for `mode: tcp` services: each accepted connection goes to
 * a server the service's policy picks among available ones (the same
 * `isAvailable` rules as HTTP: health checks, passive health, limits), another
 * one when the connect fails or times out, and is then piped both ways, with
 * half-close passed on. The server counts it as in flight until it closes.
 * Velocity never reads what flows: garbage from one client only reaches that
 * client's server connection.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { PickRequest } from '../balancer/policy.ts';
import type { ListenAddress } from '../config-fields.ts';
import { VelocityError } from '../errors.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { type AttemptOutcome, clientGoneError, isClientGone } from '../upstream/attempt.ts';
import type { DeadlineSweep, Expiring } from '../upstream/deadline-sweep.ts';
import type { Lease } from '../upstream/lease.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import { AttemptLoop, type Picked } from './attempt-loop.ts';
import { classifyUpstreamError } from './forwarder.ts';
import { bindServer } from './listener.ts';
import { proxyProtocolHeader } from './proxy-protocol.ts';
import { type AbortableTry, RequestAbort } from './request-abort.ts';
import { splice } from './splice.ts';

export interface TcpListener {
  readonly address: ListenAddress;
  /** The service new connections go to. */
  readonly service: string;
  /** Points new connections at another service (a reload moved the address); relayed ones go on. */
  retarget(service: string): void;
  /** Connections being relayed now. */
  readonly open: number;
  close(deadline: number): Promise<void>;
}

/** A connect that succeeded counts as a success for passive health and circuit breaking (no HTTP status: 0). */
const CONNECTED = { kind: 'response', status: 0, bytesOut: 0, firstByteMs: 0, complete: true } as const satisfies AttemptOutcome;

/** What a policy sees of a TCP connection: only the client's address (for ip-hash). */
function pickRequest(clientIp: string): PickRequest {
  return { clientIp, method: 'TCP', url: '', header: () => undefined, cookie: () => undefined };
}

/**
 * Accepts connections on `address` for the service named `serviceName`. The
 * service is looked up per connection, so a reload's new settings apply to new
 * connections while old ones go on.
 */
export async function listenTcp(plane: DataPlane, serviceName: string, address: ListenAddress, options: { reusePort?: boolean } = {}): Promise<TcpListener> {
  const open = new Set<Socket>();
  let target = serviceName;
  const server: Server = createServer({ pauseOnConnect: true, noDelay: true, allowHalfOpen: true }, (client) => {
    const service = plane.service(target);
    if (service?.config.mode !== 'tcp' || plane.draining) {
      client.destroy();
      return;
    }
    open.add(client);
    client.once('close', () => open.delete(client));
    client.on('error', () => client.destroy());
    relay(plane, service, client);
  });
  await bindServer(server, address, options.reusePort ?? false);
  server.on('error', (err) => plane.log.error({ err, service: target }, 'TCP listener error'));
  const bound = server.address() as { address: string; port: number };
  const listener: TcpListener = {
    address: { host: bound.address, port: bound.port },
    get service() {
      return target;
    },
    retarget: (service) => {
      target = service;
    },
    get open() {
      return open.size;
    },
    close: (deadline) =>
      new Promise<void>((resolve) => {
        // Stop accepting; relayed connections go on until they end or the deadline cuts them.
        server.close(() => resolve());
        const cut = setTimeout(
          () => {
            for (const socket of open) socket.destroy();
          },
          Math.max(0, deadline - Date.now()),
        );
        server.once('close', () => clearTimeout(cut));
      }),
  };
  return listener;
}

function relay(plane: DataPlane, service: ServiceRuntime, client: Socket): void {
  new TcpConnect(plane, service, client).start();
}

/**
 * A TCP connection's tries, over the attempt loop: connect to a server the policy picks, another one
 * after a failed connect; once connected, the two sockets are piped and the server is held until they close.
 */
class TcpConnect extends AttemptLoop {
  private readonly plane: DataPlane;
  private readonly client: Socket;
  private readonly clientIp: string;
  private readonly request: PickRequest;
  /** The servers tried, for the warning when none took the connection. */
  private readonly triedIds: string[] = [];
  private connected: ConnectTry | undefined = undefined;

  constructor(plane: DataPlane, service: ServiceRuntime, client: Socket) {
    super(plane.pools.sweep, new RequestAbort(), true);
    this.plane = plane;
    this.client = client;
    this.clientIp = (client.remoteAddress ?? '').replace(/^::ffff:/, '');
    this.request = pickRequest(this.clientIp);
    this.serve(service, Date.now());
  }

  start(): void {
    this.client.once('close', () => this.abort.abort(clientGoneError()));
    this.startTries(0);
  }

  protected acquire(tried: ReadonlySet<UpstreamServer>): Picked {
    return (this.service as ServiceRuntime).acquire(this.request, tried) ?? new VelocityError('NO_HEALTHY_SERVER');
  }

  protected tryOn(lease: Lease): void {
    this.triedIds.push(lease.server.id);
    const attempt = new ConnectTry(this, lease.server, (this.service as ServiceRuntime).config.timeouts.connect, this.plane.pools.sweep);
    this.connected = attempt;
    attempt.start(this.abort);
  }

  protected mayResend(): boolean {
    return false;
  }

  protected tryEnded(lease: Lease, outcome: AttemptOutcome | undefined): void {
    if (outcome?.kind === 'failed' && !isClientGone(outcome.error)) {
      this.plane.log.debug({ service: (this.service as ServiceRuntime).name, server: lease.server.id, err: outcome.error.message }, 'TCP connect failed; trying another server');
    }
  }

  protected answered(_outcome: Extract<AttemptOutcome, { kind: 'response' }>, lease: Lease): void {
    const upstream = (this.connected as ConnectTry).socket as Socket;
    if (this.client.destroyed) {
      upstream.destroy();
      lease.end();
    } else pipeBoth(this.service as ServiceRuntime, lease, this.client, upstream);
    this.finish(undefined);
  }

  protected cutShort(): void {}

  protected done(error: VelocityError | undefined): void {
    if (!error) return;
    if (!this.client.destroyed) {
      this.plane.log.warn({ service: (this.service as ServiceRuntime).name, client: this.clientIp, tried: this.triedIds }, 'no server could take the TCP connection; closing it');
    }
    this.client.destroy();
  }

  protected logCrash(err: unknown): void {
    this.plane.log.error({ err, service: (this.service as ServiceRuntime).name }, 'unexpected error relaying a TCP connection');
  }
}

/** One connect to one server; its timeout is checked by the thread's deadline sweep. */
class ConnectTry implements AbortableTry, Expiring {
  private readonly loop: AttemptLoop;
  private readonly server: UpstreamServer;
  private readonly timeout: number;
  private readonly sweep: DeadlineSweep;
  private control: RequestAbort | undefined = undefined;
  private readonly started = performance.now();
  socket: Socket | undefined = undefined;
  deadline = 0;
  private settled = false;

  constructor(loop: AttemptLoop, server: UpstreamServer, timeout: number, sweep: DeadlineSweep) {
    this.loop = loop;
    this.server = server;
    this.timeout = timeout;
    this.sweep = sweep;
  }

  start(control: RequestAbort): void {
    if (control.reason) return void this.abort(control.reason);
    this.control = control;
    control.startTry(this);
    const socket = connect({ host: this.server.host, port: this.server.port, noDelay: true, allowHalfOpen: true });
    this.socket = socket;
    this.deadline = this.started + this.timeout;
    this.sweep.add(this);
    const onError = (err: Error & { code?: string }) => this.fail(err);
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.removeListener('error', onError);
      const ms = performance.now() - this.started;
      this.settle({ ...CONNECTED, firstByteMs: ms });
    });
  }

  private settle(outcome: AttemptOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.sweep.delete(this);
    this.control?.endTry(this);
    this.loop.attemptSettled(outcome);
  }

  private fail(error: Error & { code?: string }): void {
    this.socket?.destroy();
    this.settle({ kind: 'failed', code: classifyUpstreamError(error), error, responseStarted: false, requestSent: false });
  }

  abort(reason: Error & { code?: string }): void {
    this.fail(reason);
  }

  expire(): void {
    this.fail(Object.assign(new Error(`connect to ${this.server.id} timed out after ${this.timeout}ms`), { code: 'VELOCITY_CONNECT_TIMEOUT' }));
  }
}

function pipeBoth(service: ServiceRuntime, lease: Lease, client: Socket, upstream: Socket): void {
  if (service.config.proxy_protocol !== 'off') {
    upstream.write(
      proxyProtocolHeader(service.config.proxy_protocol, {
        sourceAddress: client.remoteAddress,
        sourcePort: client.remotePort,
        destinationAddress: client.localAddress,
        destinationPort: client.localPort,
      }),
    );
  }
  splice(client, upstream, service.config.timeouts.tunnel, () => lease.end());
}
