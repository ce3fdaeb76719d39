/**
 * Requests waiting for a server when every healthy one is at its connection limit.
 * The bound (`queue.max_length`) is one shared counter for all threads; each thread
 * keeps its own FIFO and wakes when any thread frees capacity (Atomics.waitAsync on
 * the service's release counter). Waiters whose client went away leave the queue.
 */

import type { PickRequest } from '../balancer/policy.ts';
import { VelocityError } from '../errors.ts';
import { type SharedState, V } from '../runtime/shared-state.ts';
import type { UpstreamServer } from './server.ts';
import type { ServiceRuntime } from './service.ts';

interface Waiter {
  request: PickRequest;
  exclude: ReadonlySet<UpstreamServer>;
  resolve(result: UpstreamServer | VelocityError): void;
  timer: NodeJS.Timeout;
  done: boolean;
}

/** Poll interval as a safety net beside the wake-ups (a release could be missed between check and wait). */
const RECHECK_MS = 50;

export class RequestQueue {
  private readonly waiters: Waiter[] = [];
  private pumping = false;
  private readonly ints: Int32Array;
  private readonly lengthIndex: number;
  private readonly releasesIndex: number;
  /** The service as currently configured (swapped on reload). */
  service: ServiceRuntime;

  constructor(service: ServiceRuntime, state: SharedState) {
    this.service = service;
    this.ints = state.serviceInts;
    this.lengthIndex = state.serviceIndex(service.slot, V.QUEUE_LENGTH);
    this.releasesIndex = state.serviceIndex(service.slot, V.RELEASES);
  }

  get length(): number {
    return Atomics.load(this.ints, this.lengthIndex);
  }

  /** Waits for a server (FIFO), or answers QUEUE_FULL / QUEUE_TIMEOUT. */
  wait(request: PickRequest, exclude: ReadonlySet<UpstreamServer>, signal: AbortSignal): Promise<UpstreamServer | VelocityError> {
    const { max_length, timeout } = this.service.config.queue;
    const retryAfter = Math.max(1, Math.ceil(timeout / 1000));
    for (;;) {
      const length = Atomics.load(this.ints, this.lengthIndex);
      if (length >= max_length) return Promise.resolve(new VelocityError('QUEUE_FULL', undefined, { retryAfter }));
      if (Atomics.compareExchange(this.ints, this.lengthIndex, length, length + 1) === length) break;
    }
    return new Promise((resolve) => {
      const waiter: Waiter = {
        request,
        exclude,
        resolve,
        done: false,
        timer: setTimeout(() => this.settle(waiter, new VelocityError('QUEUE_TIMEOUT', undefined, { retryAfter })), timeout),
      };
      signal.addEventListener('abort', () => this.settle(waiter, new VelocityError('QUEUE_TIMEOUT', 'client went away while queued')), { once: true });
      this.waiters.push(waiter);
      void this.pump();
    });
  }

  private settle(waiter: Waiter, result: UpstreamServer | VelocityError): void {
    if (waiter.done) {
      // Lost the race to a timeout or abort: give the server back.
      if (!(result instanceof VelocityError)) {
        result.release();
        this.service.signalRelease();
      }
      return;
    }
    waiter.done = true;
    clearTimeout(waiter.timer);
    Atomics.sub(this.ints, this.lengthIndex, 1);
    const at = this.waiters.indexOf(waiter);
    if (at >= 0) this.waiters.splice(at, 1);
    waiter.resolve(result);
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.waiters.length > 0) {
        const head = this.waiters[0] as Waiter;
        const seen = Atomics.load(this.ints, this.releasesIndex);
        const server = this.service.acquire(head.request, head.exclude);
        if (server) {
          this.settle(head, server);
          continue;
        }
        if (!this.service.hasHealthyServer(head.exclude)) {
          this.settle(head, new VelocityError('NO_HEALTHY_SERVER', undefined, { retryAfter: 1 }));
          continue;
        }
        const waited = Atomics.waitAsync(this.ints, this.releasesIndex, seen, RECHECK_MS);
        if (waited.async) await waited.value;
      }
    } finally {
      this.pumping = false;
    }
  }
}
