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
import type { DataPlane } from '../runtime/data-plane.ts';
import type { AttemptOutcome } from '../upstream/attempt.ts';
import { connectFirst } from '../upstream/connect-first.ts';
import type { Lease } from '../upstream/lease.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import { classifyUpstreamError } from './forwarder.ts';
import { bindServer } from './listener.ts';
import { proxyProtocolHeader } from './proxy-protocol.ts';
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
    void relay(plane, service, client);
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

async function relay(plane: DataPlane, service: ServiceRuntime, client: Socket): Promise<void> {
  const clientIp = (client.remoteAddress ?? '').replace(/^::ffff:/, '');
  const request = pickRequest(clientIp);
  const tried: string[] = [];
  const result = await connectFirst<{ upstream: Socket; ms: number }>({
    service,
    pick: (exclude) => service.acquire(request, exclude),
    connect: async (lease) => {
      const started = performance.now();
      const upstream = await connectTo(lease.server, service.config.timeouts.connect);
      if (upstream instanceof Error) return { error: upstream, code: classifyUpstreamError(upstream), sent: false };
      return { connected: { upstream, ms: performance.now() - started } };
    },
    stopped: () => client.destroyed,
    onAttempt: (lease) => tried.push(lease.server.id),
    onFailure: (lease, err) => plane.log.debug({ service: service.name, server: lease.server.id, err: err.message }, 'TCP connect failed; trying another server'),
  });
  if (result.kind === 'connected') {
    const { lease, value } = result;
    lease.record({ ...CONNECTED, firstByteMs: value.ms }, value.ms);
    if (client.destroyed) {
      value.upstream.destroy();
      lease.end();
      return;
    }
    pipeBoth(service, lease, client, value.upstream);
    return;
  }
  if (!client.destroyed) plane.log.warn({ service: service.name, client: clientIp, tried }, 'no server could take the TCP connection; closing it');
  client.destroy();
}

function connectTo(server: UpstreamServer, timeout: number): Promise<Socket | Error> {
  return new Promise((resolve) => {
    const socket = connect({ host: server.host, port: server.port, noDelay: true, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(Object.assign(new Error(`connect to ${server.id} timed out after ${timeout}ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' }));
    }, timeout);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(socket);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(err);
    };
    socket.once('error', onError);
  });
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
