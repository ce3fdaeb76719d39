/**
 * Everything one thread needs to serve requests: the routing table and service
 * runtimes built from the current topology, connection pools, guards and
 * observers. A new topology is swapped in whole.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Agent } from 'undici';
import type { PickRequest } from '../balancer/policy.ts';
import { CidrSet } from '../cidr.ts';
import type { Config } from '../config/schema/root.ts';
import { VelocityError } from '../errors.ts';
import { ClientIpResolver } from '../guard/client-ip.ts';
import type { MiddlewareContext } from '../middleware/middleware.ts';
import { ObserverList, type RequestObserver, type RequestRecord } from '../observe/events.ts';
import type { Logger } from '../observe/logger.ts';
import { count } from '../observe/metrics.ts';
import { Tracer } from '../observe/tracing.ts';
import { undiciClient } from '../optional-module.ts';
import type { Guard, RequestContext, RequestRules } from '../proxy/context.ts';
import { UpstreamPools } from '../proxy/forwarder.ts';
import type { ProxyRequest } from '../proxy/proxy-message.ts';
import { buildRoutes, type RouteTarget } from '../proxy/route-table.ts';
import { Router } from '../proxy/router.ts';
import type { SharedState } from '../state/shared-state.ts';
import { H2Pools } from '../upstream/h2-pool.ts';
import type { Lease } from '../upstream/lease.ts';
import { logUpstreamChange, type UpstreamChange } from '../upstream/outcome.ts';
import { RequestQueue } from '../upstream/queue.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import { type PolicyLoader, policyLoader, type ServiceEvents, ServiceRuntime } from '../upstream/service.ts';
import { stickySecret, stickySetCookie, stickyTarget, stickyToken } from '../upstream/sticky.ts';
import { warnIfInsecure, warnTlsFailure } from '../upstream/tls.ts';
import type { Topology } from '../upstream/topology.ts';

const NO_RULES: RequestRules = { clientIps: new ClientIpResolver(new CidrSet([])), guards: [] };

export interface DataPlaneOptions {
  /** The instance's config folder: custom policy and middleware modules resolve from it. */
  baseDir?: string;
  /** Builds a service's policy (built-ins, and custom modules from the instance's folder). */
  loadPolicy?: PolicyLoader;
  /** The request rules of a config; asked again whenever the topology brings a new config. None: no guards. */
  rules?: (config: Config) => RequestRules;
  /**
   * False for a plane that serves no request (the main thread's when worker threads serve): its tracer
   * never takes the config, so it builds no span exporter (each serving thread has its own).
   */
  serves?: boolean;
}

export class DataPlane {
  readonly pools = new UpstreamPools();
  /** HTTP/2 connections to h2c:// and `http2: true` servers. */
  readonly h2 = new H2Pools(this.pools.sweep);
  /** Trace context and span export (per thread). */
  readonly tracer: Tracer;
  readonly observers = new ObserverList();
  /** Told when observers come or go: worker threads forward records to this plane only while someone listens. */
  readonly observersChanged = new EventEmitter<{ change: [count: number] }>();
  private requestRules = NO_RULES;
  private shuttingDown = false;
  private services = new Map<string, ServiceRuntime>();
  private router = new Router<RouteTarget>([]);
  /**
   * Middleware subrequests (forward auth, mirroring, error pages) and what else middleware may use;
   * made (and undici loaded) when a middleware first asks for it.
   */
  private subrequests: Agent | undefined;
  private lastMiddlewareWarning = 0;
  private readonly middlewareContext: MiddlewareContext;
  private topology: Topology | undefined;
  private lastUnroutedLog = 0;
  private readonly queues = new Map<string, RequestQueue>();
  /**
   * Circuit and ejection changes, for metrics, the dashboard and the API. On the main
   * thread's plane this includes the changes worker threads make (they forward them).
   */
  readonly upstreamChanges = new EventEmitter<{ change: [UpstreamChange] }>();
  /** A change made on this thread: logged here, then told to observers. */
  private readonly serviceEvents: ServiceEvents = {
    upstreamChange: (change: UpstreamChange): void => {
      logUpstreamChange(this.log, change);
      this.upstreamChanges.emit('change', change);
    },
    tlsFailure: (service, server, error) => warnTlsFailure(this.log, service.name, server, error),
  };

  readonly state: SharedState;
  readonly thread: number;
  readonly log: Logger;
  private readonly loadPolicy: PolicyLoader;
  private readonly rules: ((config: Config) => RequestRules) | undefined;
  private readonly serves: boolean;

  constructor(state: SharedState, thread: number, log: Logger, options: DataPlaneOptions = {}) {
    this.state = state;
    this.thread = thread;
    this.log = log;
    const baseDir = options.baseDir ?? process.cwd();
    this.loadPolicy = options.loadPolicy ?? policyLoader(baseDir, (service, message) => log.warn({ service }, message));
    const plane = this;
    this.middlewareContext = {
      service: (name) => this.services.get(name),
      get http() {
        return plane.subrequestAgent();
      },
      baseDir,
      warn: (message) => {
        const now = Date.now();
        if (now - this.lastMiddlewareWarning < 1000) return;
        this.lastMiddlewareWarning = now;
        this.log.warn(message);
      },
    };
    this.rules = options.rules;
    this.serves = options.serves ?? true;
    this.tracer = new Tracer(log, {
      exported: (n) => count(state, 'velocity_trace_spans_exported_total', { by: n }),
      dropped: (n) => count(state, 'velocity_trace_spans_dropped_total', { by: n }),
    });
  }

  /** The guards requests go through, from the current config. */
  get guards(): readonly Guard[] {
    return this.requestRules.guards;
  }

  /** Whether the instance is shutting down: requests still arriving are refused, connections closed after. */
  get draining(): boolean {
    return this.shuttingDown;
  }

  drain(): void {
    this.shuttingDown = true;
  }

  get version(): number {
    return this.topology?.version ?? 0;
  }

  get currentTopology(): Topology | undefined {
    return this.topology;
  }

  apply(topology: Topology): void {
    if (this.rules && topology.config !== this.topology?.config) this.requestRules = this.rules(topology.config);
    const next = new Map<string, ServiceRuntime>();
    for (const spec of topology.services) {
      const previous = this.services.get(spec.name);
      next.set(spec.name, new ServiceRuntime(spec, this.state, this.thread, previous?.slot === spec.slot ? previous : undefined, this.loadPolicy, this.serviceEvents));
    }
    // TCP services take connections on their own listeners, never HTTP requests.
    const http = [...next.values()].filter((s) => s.config.mode === 'http');
    this.router = new Router(buildRoutes(http, this.middlewareContext));
    for (const s of next.values()) warnIfInsecure(this.log, s.name, s.config.tls);
    this.services = next;
    this.topology = topology;
    if (this.serves) this.tracer.configure(topology.config.tracing);
    const urls = new Set<string>();
    for (const s of next.values()) for (const server of s.servers) urls.add(server.url);
    void this.pools.retain(urls);
    this.h2.retain(urls);
  }

  service(name: string): ServiceRuntime | undefined {
    return this.services.get(name);
  }

  allServices(): IterableIterator<ServiceRuntime> {
    return this.services.values();
  }

  route(host: string | undefined, path: string, request?: PickRequest): ServiceRuntime | undefined {
    return this.router.match(host, path, request)?.service;
  }

  /** The route a request takes: its service and middleware. */
  routeTarget(host: string | undefined, path: string, request: PickRequest): RouteTarget | undefined {
    return this.router.match(host, path, request);
  }

  noteUnrouted(host: string, path: string): void {
    const now = Date.now();
    if (now - this.lastUnroutedLog < 1000) return;
    this.lastUnroutedLog = now;
    const services = [...this.services.values()].map((s) => `${s.name} (hosts ${s.config.hosts.join(',')}; paths ${s.config.paths.join(',')})`);
    this.log.warn({ host, path, services }, 'no service matches this request (404)');
  }

  /** The client's address as Velocity sees it (the socket peer; trusted proxies are handled by guards). */
  clientIp(req: ProxyRequest): string {
    return this.requestRules.clientIps.resolve(req);
  }

  /** Whether the peer is a trusted proxy whose X-Forwarded-For may be kept. */
  trustsPeer(req: ProxyRequest): boolean {
    return this.requestRules.clientIps.peerTrusted(req);
  }

  /**
   * A lease on a server for this request, or the error to answer with. A promise only
   * when the request has to wait in the queue: the usual pick costs no event-loop turn.
   * `abort.signal` is read only for a wait in the queue (the request path makes it on demand).
   */
  select(
    service: ServiceRuntime,
    ctx: RequestContext,
    tried: ReadonlySet<UpstreamServer>,
    abort: { readonly signal: AbortSignal },
  ): Lease | VelocityError | Promise<Lease | VelocityError> {
    const sticky = service.config.sticky;
    if (sticky) {
      const target = stickyTarget(service.servers, ctx.cookie(sticky.cookie), stickySecret(service.name, sticky));
      const lease = target && !tried.has(target) ? service.acquireSpecific(target) : undefined;
      if (lease) return lease;
    }
    const queueing = service.config.queue.max_length > 0;
    // While requests wait in the queue, a new one gets in line behind them instead of taking a freed server first.
    // The length is the service's cells' (its queue's, on every thread): no lookup of the queue per request.
    const lease = queueing && service.cells.queueLength > 0 ? undefined : service.acquire(ctx, tried);
    if (lease) return lease;
    // Healthy servers exist but all are at their limit: wait in the queue.
    if (queueing && service.hasHealthyServer(tried)) return this.waitInQueue(service, ctx, tried, abort.signal);
    if (service.hasHealthyServer(tried)) return new VelocityError('QUEUE_FULL', undefined, { retryAfter: 1 });
    return new VelocityError('NO_HEALTHY_SERVER', undefined, { retryAfter: 1 });
  }

  private async waitInQueue(service: ServiceRuntime, ctx: RequestContext, tried: ReadonlySet<UpstreamServer>, signal: AbortSignal): Promise<Lease | VelocityError> {
    const queuedAt = performance.now();
    const result = await this.queueFor(service).wait(ctx, tried, signal);
    ctx.record.queueWaitMs += performance.now() - queuedAt;
    return result;
  }

  /** With sticky sessions, (re)writes the cookie when it does not already name `server`. */
  stickTo(service: ServiceRuntime, server: UpstreamServer, ctx: RequestContext): void {
    const sticky = service.config.sticky;
    if (!sticky) return;
    const token = stickyToken(server, stickySecret(service.name, sticky));
    if (ctx.cookie(sticky.cookie) !== token) ctx.setResponseHeader('set-cookie', stickySetCookie(sticky, token, ctx.proto === 'https'));
  }

  queueFor(service: ServiceRuntime): RequestQueue {
    let queue = this.queues.get(service.name);
    if (!queue || queue.service.slot !== service.slot) {
      queue = new RequestQueue(service, service.cells);
      this.queues.set(service.name, queue);
    }
    queue.follow(service);
    return queue;
  }

  addObserver(observer: RequestObserver): () => void {
    const remove = this.observers.add(observer);
    this.observersChanged.emit('change', this.observers.size);
    return () => {
      remove();
      this.observersChanged.emit('change', this.observers.size);
    };
  }

  emit(record: RequestRecord): void {
    if (this.observers.size === 0) return;
    this.observers.emit(record, this.observerFailed);
  }

  /** Made once: an arrow written in emit() would be a closure (and its context) per request. */
  private readonly observerFailed = (err: unknown): void => this.log.error({ err }, 'an access-log observer failed');

  private subrequestAgent(): Agent {
    this.subrequests ??= new (undiciClient().Agent)({ keepAliveTimeout: 4_000, connections: 64 });
    return this.subrequests;
  }

  async close(): Promise<void> {
    this.h2.closeAll();
    await this.subrequests?.destroy().catch(() => undefined);
    await Promise.all([this.pools.closeAll(), this.tracer.close()]);
  }
}
