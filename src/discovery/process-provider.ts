/**
 * Runs a service's backends as local processes from a command template: each
 * instance gets a free PORT, is proposed once it accepts connections, is restarted
 * with exponential backoff when it crashes (never in a tight loop), and on scale
 * down or shutdown is drained first, then stopped with SIGTERM (SIGKILL after a grace).
 */
import type { Buffer } from 'node:buffer';
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { connect, createServer } from 'node:net';
import { cappedBackoff } from '../backoff.ts';
import type { ProcessConfig } from '../config/schema/discovery.ts';
import type { Logger } from '../observe/logger.ts';
import type { ControlPlane } from '../upstream/control-plane.ts';
import type { DiscoveryProvider, ProposedServer, ServerSetSink } from './provider.ts';

interface Instance {
  index: number;
  name: string;
  port: number;
  child: ChildProcess | undefined;
  ready: boolean;
  /** Set when the instance should not come back (scale down, shutdown). */
  retiring: boolean;
  crashes: number;
  startedAt: number;
  restartTimer: NodeJS.Timeout | undefined;
}

/** A crash after this long running counts as a fresh start for the backoff. */
const STABLE_AFTER_MS = 10_000;

export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export class ProcessProvider extends EventEmitter<{ change: [] }> implements DiscoveryProvider {
  readonly source = 'process' as const;
  private readonly instances: Instance[] = [];
  private sink: ServerSetSink | undefined;
  private nextIndex = 0;
  private stopped = false;
  private desired: number;
  private readonly service: string;
  private readonly config: ProcessConfig;
  private readonly control: ControlPlane;
  private readonly log: Logger;
  private readonly cwd: string;

  constructor(service: string, config: ProcessConfig, control: ControlPlane, log: Logger, baseDir: string) {
    super();
    this.service = service;
    this.config = config;
    this.control = control;
    this.log = log.child({ service, provider: 'process' });
    this.cwd = config.cwd ?? baseDir;
    this.desired = config.instances;
  }

  /** Instances running or starting (not those being retired). */
  get count(): number {
    return this.instances.filter((i) => !i.retiring).length;
  }

  get readyCount(): number {
    return this.instances.filter((i) => !i.retiring && i.ready).length;
  }

  async start(sink: ServerSetSink): Promise<void> {
    this.sink = sink;
    await this.scaleTo(this.desired);
  }

  /** Starts or retires instances until `count` are wanted. Retiring drains before stopping. */
  async scaleTo(count: number): Promise<void> {
    this.desired = count;
    const starting: Promise<void>[] = [];
    while (this.count < count) starting.push(this.launch(this.newInstance()));
    const retiring: Promise<void>[] = [];
    while (this.count > count) {
      const victim = [...this.instances].reverse().find((i) => !i.retiring);
      if (!victim) break;
      retiring.push(this.retire(victim));
    }
    await Promise.all([...starting, ...retiring]);
  }

  private newInstance(): Instance {
    const index = this.nextIndex++;
    const instance: Instance = {
      index,
      name: `${this.service}-proc-${index}`,
      port: 0,
      child: undefined,
      ready: false,
      retiring: false,
      crashes: 0,
      startedAt: 0,
      restartTimer: undefined,
    };
    this.instances.push(instance);
    return instance;
  }

  private async launch(instance: Instance): Promise<void> {
    if (this.stopped || instance.retiring) return;
    instance.port = await freePort(this.config.host);
    const [program, ...args] = this.config.command.map((part) => part.replaceAll('{port}', String(instance.port)));
    instance.startedAt = Date.now();
    instance.ready = false;
    const child = spawn(program as string, args, {
      cwd: this.cwd,
      env: { ...process.env, ...this.config.env, PORT: String(instance.port), HOST: this.config.host },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    instance.child = child;
    const prefix = { instance: instance.name, pid: child.pid };
    child.stdout?.on('data', (d: Buffer) => this.log.debug({ ...prefix, out: d.toString().trimEnd() }, 'instance output'));
    child.stderr?.on('data', (d: Buffer) => this.log.debug({ ...prefix, err: d.toString().trimEnd() }, 'instance output'));
    child.once('error', (err) => this.log.error({ ...prefix, err: err.message }, 'instance could not be started'));
    child.once('exit', (code, signal) => this.onExit(instance, child, code, signal));
    this.log.info({ ...prefix, port: instance.port }, 'instance starting');

    const deadline = Date.now() + this.config.ready_timeout;
    while (Date.now() < deadline && instance.child === child && child.exitCode === null && child.signalCode === null) {
      if (await accepts(this.config.host, instance.port)) {
        instance.ready = true;
        this.log.info({ ...prefix, port: instance.port }, 'instance ready');
        this.publish();
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (instance.child === child && child.exitCode === null && child.signalCode === null && !instance.retiring) {
      this.log.warn({ ...prefix, timeoutMs: this.config.ready_timeout }, 'instance did not accept connections in time; restarting it');
      child.kill('SIGKILL');
    }
  }

  private onExit(instance: Instance, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (instance.child !== child) return;
    instance.child = undefined;
    const wasReady = instance.ready;
    instance.ready = false;
    if (wasReady) this.publish();
    if (this.stopped || instance.retiring) return;
    const ranFor = Date.now() - instance.startedAt;
    instance.crashes = ranFor > STABLE_AFTER_MS ? 1 : instance.crashes + 1;
    const { base, max } = this.config.restart_backoff;
    const wait = cappedBackoff(base, max, instance.crashes - 1);
    this.log.warn({ instance: instance.name, code, signal, ranForMs: ranFor, restartInMs: wait }, 'instance exited; restarting with backoff');
    instance.restartTimer = setTimeout(() => void this.launch(instance), wait);
  }

  /** Drains the instance's server, then stops the process. */
  private async retire(instance: Instance): Promise<void> {
    instance.retiring = true;
    if (instance.restartTimer) clearTimeout(instance.restartTimer);
    if (instance.ready) {
      const removed = new Promise<void>((resolve) => {
        const onRemoved = (e: { service: string; server: string }) => {
          if (e.service === this.service && e.server === instance.name) {
            this.control.off('removed', onRemoved);
            resolve();
          }
        };
        this.control.on('removed', onRemoved);
      });
      instance.ready = false;
      this.publish();
      await removed;
    }
    await this.kill(instance);
    this.instances.splice(this.instances.indexOf(instance), 1);
    this.log.info({ instance: instance.name }, 'instance stopped');
  }

  private async kill(instance: Instance): Promise<void> {
    const child = instance.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), this.config.stop_timeout);
    await exited;
    clearTimeout(timer);
  }

  private publish(): void {
    const servers: ProposedServer[] = this.instances
      .filter((i) => i.ready && !i.retiring)
      .map((i) => ({ url: `http://${this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host}:${i.port}`, weight: 1, name: i.name }));
    this.sink?.propose(this.service, this.source, servers);
    this.emit('change');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const i of this.instances) if (i.restartTimer) clearTimeout(i.restartTimer);
    await Promise.all(this.instances.map((i) => this.kill(i)));
  }
}
