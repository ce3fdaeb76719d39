/**
 * The data-path worker threads of `workers: N`. The main thread keeps the
 * control plane (health checks run once), the admin API and the single-owner
 * observers; each worker runs a data plane over the same shared state and
 * listens on the same ports with SO_REUSEPORT.
 *
 * Every topology is posted to every worker and acknowledged, so `applied()`
 * resolves once a change is live on all of them; listener changes of a reload
 * are a request/reply to each. A worker that exits unasked is replaced at once
 * and the in-flight counts it held are given back (`releaseThread`); the other
 * workers keep the port open meanwhile.
 */
import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:net';
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import type { Config } from '../config/schema/root.ts';
import type { ListenAddress } from '../config-fields.ts';
import type { Logger } from '../observe/logger.ts';
import type { BoundListener } from '../proxy/listener-set.ts';
import type { SharedState } from '../state/shared-state.ts';
import type { ControlPlane } from '../upstream/control-plane.ts';
import type { Topology } from '../upstream/topology.ts';
import type { DataPlane } from './data-plane.ts';
import type { BlocklistChange, ThreadBlocklist } from './thread-blocklist.ts';
import type { FromWorker, ToWorker, WorkerStart } from './thread-protocol.ts';
import { YOUNG_GENERATION_MB } from './young-generation.ts';

/** The worker entry beside this file: worker.ts from source, worker.js from dist. */
const WORKER_URL = new URL(`./worker${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`, import.meta.url);

/** How long `applied()` waits for a thread before saying so in the log and going on. */
const APPLY_TIMEOUT_MS = 10_000;
/** A worker that keeps dying is restarted with growing pauses, up to this. */
const MAX_RESTART_DELAY_MS = 5_000;

export interface ThreadPoolOptions {
  count: number;
  state: SharedState;
  control: ControlPlane;
  log: Logger;
  policyDir: string;
  /** The main thread's data plane: records the workers forward are emitted on it, for its observers. */
  records: DataPlane;
  /** The main thread's blocklist (admin API); workers keep copies in step with it. */
  blocklist: ThreadBlocklist;
}

interface Thread {
  /** Index in shared state: 1…count. */
  index: number;
  worker: Worker;
  ready: boolean;
  exited: boolean;
  /** Topology version this worker acknowledged. */
  version: number;
  /** Set when the pool itself stops this worker (not a crash). */
  stopping: boolean;
  /** Called when the worker finished draining or exited. */
  onClosed: (() => void) | undefined;
}

/** Worker threads for embedding and tests: `velocity.threads`. */
export interface ThreadsInfo {
  /** Data-path threads (the main thread does not serve in this mode). */
  readonly count: number;
  /** How many workers were replaced after exiting unasked. */
  readonly restarts: number;
  /** The live worker of each data-path thread (index 1…count in shared state). */
  workers(): { index: number; worker: Worker }[];
  /** Resolves once every thread runs the latest topology. */
  applied(): Promise<void>;
  on(event: 'replaced', listener: (index: number) => void): unknown;
}

export class ThreadPool extends EventEmitter<{ replaced: [number] }> implements ThreadsInfo {
  private readonly threads: Thread[] = [];
  private readonly options: ThreadPoolOptions;
  private readonly ports: PortPicker;
  /** Listener config as the workers run it (ports resolved). */
  private listenConfig: Config;
  private boundListeners: BoundListener[] = [];
  private lastConfigSent: Config;
  private forwarding: boolean;
  private closing = false;
  /** Set once start() succeeded: from then on a worker that exits is replaced. */
  private started = false;
  private nextRequest = 0;
  private readonly pending = new Map<number, { thread: Thread; resolve(reply: Extract<FromWorker, { type: 'reply' }>): void }>();
  private readonly waiters = new Set<{ version: number; done(): void }>();
  private readonly crashes = new Map<number, { at: number; delay: number }>();
  restarts = 0;

  private constructor(options: ThreadPoolOptions, ports: PortPicker, listenConfig: Config) {
    super();
    this.options = options;
    this.ports = ports;
    this.listenConfig = listenConfig;
    this.lastConfigSent = options.control.currentConfig;
    this.forwarding = options.records.observers.size > 0;
  }

  /** Starts `count` workers serving `config`; rejects (with every worker stopped) when one cannot listen. */
  static async start(options: ThreadPoolOptions, config: Config): Promise<ThreadPool> {
    const ports = new PortPicker();
    const resolved = await ports.resolve(config);
    const pool = new ThreadPool(options, ports, resolved.config);
    options.control.on('topology', pool.onTopology);
    try {
      await Promise.all(Array.from({ length: options.count }, (_, i) => pool.spawn(i + 1)));
    } catch (err) {
      options.control.off('topology', pool.onTopology);
      await pool.terminateAll();
      throw err;
    } finally {
      resolved.release();
    }
    pool.started = true;
    options.records.observersChanged.on('change', (count) => pool.setForwarding(count > 0));
    return pool;
  }

  get count(): number {
    return this.options.count;
  }

  get bound(): BoundListener[] {
    return this.boundListeners;
  }

  workers(): { index: number; worker: Worker }[] {
    return this.threads.map((t) => ({ index: t.index, worker: t.worker }));
  }

  /** Spawns the worker for thread `index`; resolves when it listens, rejects when it could not start. */
  private spawn(index: number): Promise<void> {
    const { control, state, log, policyDir } = this.options;
    const topology = control.current;
    const data: WorkerStart = {
      buffers: state.buffers,
      thread: index,
      topology,
      listen: this.listenConfig,
      policyDir,
      logLevel: log.level,
      forwardRecords: this.forwarding,
    };
    const worker = new Worker(WORKER_URL, { workerData: data, name: `velocity-data-${index}`, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } });
    const thread: Thread = { index, worker, ready: false, exited: false, version: 0, stopping: false, onClosed: undefined };
    const at = this.threads.findIndex((t) => t.index === index);
    if (at >= 0) this.threads[at] = thread;
    else this.threads.push(thread);
    // A topology published while the worker starts is in its queue already: it was posted to it.
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'ready') {
          thread.ready = true;
          thread.version = message.version;
          if (this.boundListeners.length === 0 || this.threads[0] === thread) this.boundListeners = message.bound;
          this.settleWaiters();
          resolve();
        } else if (message.type === 'failed') {
          reject(new Error(message.message));
          void worker.terminate();
        } else this.onMessage(thread, message);
      });
      worker.on('error', (err) => log.error({ err, thread: index }, 'data-path thread error'));
      worker.on('exit', (code) => {
        reject(new Error(`data-path thread ${index} exited with code ${code} before it was ready`));
        this.onExit(thread, code);
      });
    });
  }

  private onMessage(thread: Thread, message: FromWorker): void {
    switch (message.type) {
      case 'applied':
        thread.version = Math.max(thread.version, message.version);
        this.settleWaiters();
        return;
      case 'reply': {
        const pending = this.pending.get(message.id);
        this.pending.delete(message.id);
        pending?.resolve(message);
        return;
      }
      case 'records':
        for (const record of message.records) this.options.records.emit(record);
        return;
      case 'upstream':
        this.options.records.upstreamChanges.emit('change', message.change);
        return;
      case 'log':
        relayLog(this.options.log, message.line);
        return;
      case 'blocklist': {
        const refused = this.options.blocklist.apply(message.change);
        if (refused) this.options.log.warn({ thread: thread.index, change: message.change, reason: refused }, 'a blocklist change from a data-path thread was not copied here');
        this.broadcast({ type: 'blocklist', change: message.change }, thread);
        return;
      }
      case 'closed':
        thread.onClosed?.();
        return;
    }
  }

  private onExit(thread: Thread, code: number): void {
    const { state, log } = this.options;
    // Whatever it held is no longer in flight: give the counts (and any spin lock) back.
    state.releaseThread(thread.index);
    thread.exited = true;
    thread.onClosed?.();
    for (const [id, p] of this.pending) {
      if (p.thread !== thread) continue;
      this.pending.delete(id);
      p.resolve({ type: 'reply', id, error: `data-path thread ${thread.index} exited` });
    }
    // Before start() succeeded, a failure fails the start instead.
    if (thread.stopping || this.closing || !this.started) return;
    this.restarts++;
    const now = Date.now();
    const last = this.crashes.get(thread.index);
    // A thread that dies again soon after a restart waits longer before the next one.
    const delay = last && now - last.at < 10_000 ? Math.min(MAX_RESTART_DELAY_MS, Math.max(100, last.delay * 2)) : 0;
    this.crashes.set(thread.index, { at: now + delay, delay });
    log.error({ thread: thread.index, code, restartInMs: delay }, 'data-path thread exited; replacing it (its in-flight requests were lost)');
    setTimeout(() => {
      if (this.closing) return;
      this.spawn(thread.index).then(
        () => {
          log.info({ thread: thread.index }, 'data-path thread replaced');
          this.emit('replaced', thread.index);
        },
        (err: unknown) => log.error({ thread: thread.index, err: (err as Error).message }, 'replacing a data-path thread failed'),
      );
    }, delay).unref();
  }

  private post(thread: Thread, message: ToWorker): void {
    thread.worker.postMessage(message);
  }

  /** Passes a blocklist change made on the main thread to every worker. */
  relayBlocklist(change: BlocklistChange): void {
    this.broadcast({ type: 'blocklist', change });
  }

  private broadcast(message: ToWorker, except?: Thread): void {
    for (const t of this.threads) if (t !== except) this.post(t, message);
  }

  private readonly onTopology = (topology: Topology): void => {
    const configChanged = topology.config !== this.lastConfigSent;
    this.lastConfigSent = topology.config;
    this.broadcast({ type: 'topology', topology, configChanged });
  };

  private setForwarding(on: boolean): void {
    if (on === this.forwarding) return;
    this.forwarding = on;
    this.broadcast({ type: 'forward-records', on });
  }

  /** Resolves once every thread runs the latest topology (or after a bounded wait, logged). */
  applied(): Promise<void> {
    const version = this.options.control.current.version;
    if (this.allAt(version)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const waiter = {
        version,
        done: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        const behind = this.threads.filter((t) => t.version < version).map((t) => t.index);
        this.options.log.warn({ version, threads: behind }, 'data-path threads did not confirm a change in time');
        waiter.done();
      }, APPLY_TIMEOUT_MS);
      this.waiters.add(waiter);
    });
  }

  private allAt(version: number): boolean {
    return this.threads.every((t) => t.version >= version);
  }

  private settleWaiters(): void {
    for (const w of this.waiters) if (this.allAt(w.version)) w.done();
  }

  /**
   * Makes every thread's listeners match `config`. If one thread cannot, all go
   * back to the listeners they had and this throws: a reload is all or nothing.
   */
  async reconcile(config: Config): Promise<void> {
    const resolved = await this.ports.resolve(config);
    try {
      const replies = await Promise.all(this.threads.map((t) => this.request(t, resolved.config)));
      const failed = replies.find((r) => r.error !== undefined);
      if (failed) {
        await Promise.all(this.threads.map((t) => this.request(t, this.listenConfig)));
        throw new Error(failed.error);
      }
      this.listenConfig = resolved.config;
      const first = replies[0]?.bound;
      if (first) this.boundListeners = first;
    } finally {
      resolved.release();
    }
  }

  private request(thread: Thread, config: Config): Promise<Extract<FromWorker, { type: 'reply' }>> {
    const id = ++this.nextRequest;
    return new Promise((resolve) => {
      this.pending.set(id, { thread, resolve });
      this.post(thread, { type: 'listeners', id, config });
    });
  }

  /** The threads whose event loop did not answer a ping within `timeoutMs`. */
  async silentThreads(timeoutMs: number): Promise<number[]> {
    const answers = await Promise.all(
      this.threads.map(
        (thread) =>
          new Promise<boolean>((resolve) => {
            const id = ++this.nextRequest;
            const timer = setTimeout(() => {
              this.pending.delete(id);
              resolve(false);
            }, timeoutMs);
            this.pending.set(id, {
              thread,
              resolve: (reply) => {
                clearTimeout(timer);
                resolve(reply.error === undefined);
              },
            });
            this.post(thread, { type: 'ping', id });
          }),
      ),
    );
    return this.threads.filter((_, i) => !answers[i]).map((t) => t.index);
  }

  /** Readiness fails on every thread from now on (a shutdown begins); requests are still served. */
  markUnready(): void {
    this.broadcast({ type: 'unready' });
  }

  /** Graceful stop: every thread stops accepting and finishes its requests until `deadline`. */
  async close(deadline: number): Promise<void> {
    this.closing = true;
    this.options.control.off('topology', this.onTopology);
    await Promise.all(
      this.threads.map(async (thread) => {
        thread.stopping = true;
        if (thread.exited) return;
        const closed = new Promise<void>((resolve) => {
          thread.onClosed = resolve;
        });
        this.post(thread, { type: 'drain', deadline });
        // A thread stuck past the deadline is cut off.
        const cut = setTimeout(() => void thread.worker.terminate(), Math.max(0, deadline - Date.now()) + 2_000);
        await closed;
        clearTimeout(cut);
        await thread.worker.terminate();
      }),
    );
  }

  private async terminateAll(): Promise<void> {
    this.closing = true;
    await Promise.all(
      this.threads.map((t) => {
        t.stopping = true;
        return t.worker.terminate();
      }),
    );
  }
}

/** Writes a worker's log line with the main thread's logger. */
function relayLog(log: Logger, line: string): void {
  let entry: { level?: number; msg?: string; time?: unknown } & Record<string, unknown>;
  try {
    entry = JSON.parse(line);
  } catch {
    return;
  }
  const { level, msg, time: _time, ...fields } = entry;
  const label = (pino.levels.labels[level ?? 30] ?? 'info') as 'info';
  log[label](fields, msg);
}

/**
 * Port 0 means "any free port", but every thread must bind the same one. The
 * main thread picks it by listening there itself (with SO_REUSEPORT, like the
 * workers) until the workers are bound, and remembers it for later reloads.
 */
class PortPicker {
  private readonly picked = new Map<string, number>();

  async resolve(config: Config): Promise<{ config: Config; release(): void }> {
    const holders: Server[] = [];
    let n = 0;
    const pick = async (kind: string, address: ListenAddress, service?: string): Promise<ListenAddress> => {
      if (address.port !== 0) return address;
      const key = `${kind} ${address.host} ${service ?? `#${n++}`}`;
      let port = this.picked.get(key);
      if (port === undefined) {
        const holder = createServer();
        await new Promise<void>((resolve, reject) => {
          holder.once('error', reject);
          holder.listen({ host: address.host, port: 0, reusePort: true }, () => resolve());
        });
        holders.push(holder);
        port = (holder.address() as { port: number }).port;
        this.picked.set(key, port);
      }
      return { host: address.host, port };
    };
    const release = () => {
      for (const h of holders) h.close();
    };
    try {
      const listen: ListenAddress[] = [];
      for (const a of config.listen) listen.push(await pick('http', a));
      const listeners: Config['listeners'] = [];
      for (const l of config.listeners) listeners.push({ ...l, listen: await pick(l.type, l.listen) });
      const services: Config['services'] = [];
      for (const s of config.services) services.push(s.listen ? { ...s, listen: await pick('tcp', s.listen, s.name) } : s);
      return { config: { ...config, listen, listeners, services }, release };
    } catch (err) {
      release();
      throw err;
    }
  }
}
