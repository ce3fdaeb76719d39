/**
 * Requests waiting for a server when every healthy one is at its connection limit.
 * The bound (`queue.max_length`) is one shared counter for all threads; each thread
 * keeps its own FIFO and wakes when any thread frees capacity (Atomics.waitAsync on
 * the service's release counter). Waiters whose client went away leave the queue.
 *
 * The oldest waiter that can be served is served first. A waiter that cannot take
 * any free server (a retry excluding the servers it already tried) does not hold
 * up those behind it.
 */

import type { PickRequest } from '../balancer/policy.ts';
import { VelocityError } from '../errors.ts';
import type { ServiceCells } from '../state/service-cells.ts';
import type { Lease } from './lease.ts';
import type { UpstreamServer } from './server.ts';

/** What the queue needs of a service (ServiceRuntime in production, a stand-in in unit tests). */
export interface QueuedService {
  readonly slot: number;
  readonly config: { readonly queue: { readonly max_length: number; readonly timeout: number } };
  acquire(request: PickRequest, exclude: ReadonlySet<UpstreamServer>): Lease | undefined;
  hasHealthyServer(exclude: ReadonlySet<UpstreamServer>): boolean;
  signalRelease(): void;
}

interface Waiter {
  request: PickRequest;
  exclude: ReadonlySet<UpstreamServer>;
  resolve(result: Lease | VelocityError): void;
  timer: NodeJS.Timeout;
  signal: AbortSignal;
  onAbort(): void;
  done: boolean;
}

/** Poll interval as a safety net beside the wake-ups (capacity also returns when a circuit closes or an ejection ends). */
const RECHECK_MS = 50;

export class RequestQueue {
  private readonly waiters: Waiter[] = [];
  private pumping = false;
  private readonly cells: ServiceCells;
  private current: QueuedService;

  constructor(service: QueuedService, cells: ServiceCells) {
    this.current = service;
    this.cells = cells;
  }

  /** The service as currently configured. */
  get service(): QueuedService {
    return this.current;
  }

  /** Takes the service as a reload reconfigured it (same slot): waiters go on with its servers and queue settings. */
  follow(service: QueuedService): void {
    this.current = service;
  }

  /** Requests waiting on every thread. */
  get length(): number {
    return this.cells.queueLength;
  }

  /** Waits for a server (FIFO), or answers QUEUE_FULL / QUEUE_TIMEOUT. */
  wait(request: PickRequest, exclude: ReadonlySet<UpstreamServer>, signal: AbortSignal): Promise<Lease | VelocityError> {
    const { max_length, timeout } = this.service.config.queue;
    const retryAfter = Math.max(1, Math.ceil(timeout / 1000));
    if (signal.aborted) return Promise.resolve(new VelocityError('QUEUE_TIMEOUT', 'client went away before it was queued'));
    if (!this.cells.tryEnqueue(max_length)) return Promise.resolve(new VelocityError('QUEUE_FULL', undefined, { retryAfter }));
    return new Promise((resolve) => {
      const waiter: Waiter = {
        request,
        exclude,
        resolve,
        signal,
        done: false,
        timer: setTimeout(() => this.settle(waiter, new VelocityError('QUEUE_TIMEOUT', undefined, { retryAfter })), timeout),
        onAbort: () => this.settle(waiter, new VelocityError('QUEUE_TIMEOUT', 'client went away while queued')),
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiters.push(waiter);
      // A running pump sleeps until a release: serve what can be served now instead of waiting for it.
      if (this.pumping) this.serveOnePass();
      else void this.pump();
    });
  }

  private settle(waiter: Waiter, result: Lease | VelocityError): void {
    if (waiter.done) return;
    waiter.done = true;
    clearTimeout(waiter.timer);
    waiter.signal.removeEventListener('abort', waiter.onAbort);
    this.cells.dequeue();
    const at = this.waiters.indexOf(waiter);
    if (at >= 0) this.waiters.splice(at, 1);
    waiter.resolve(result);
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.waiters.length > 0) {
        const seen = this.cells.releases;
        if (this.serveOnePass()) continue;
        const waited = this.cells.waitForRelease(seen, RECHECK_MS);
        if (waited) await waited;
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Serves the oldest waiter that can be served now; answers the ones no server will ever take. True if any left. */
  private serveOnePass(): boolean {
    let blockedWithoutExclusions = false;
    for (const waiter of [...this.waiters]) {
      const unrestricted = waiter.exclude.size === 0;
      // An earlier waiter without exclusions found nothing: neither will this one.
      if (unrestricted && blockedWithoutExclusions) continue;
      const lease = this.service.acquire(waiter.request, waiter.exclude);
      if (lease) {
        this.settle(waiter, lease);
        return true;
      }
      if (!this.service.hasHealthyServer(waiter.exclude)) {
        this.settle(waiter, new VelocityError('NO_HEALTHY_SERVER', undefined, { retryAfter: 1 }));
        return true;
      }
      if (unrestricted) blockedWithoutExclusions = true;
    }
    return false;
  }
}
