/**
 * Active health checks, run once per process by the control plane (not per
 * thread). A checker knows nothing of where health is kept: it reports each
 * result and each change (logged here with its reason) through HealthStatusSetter,
 * as Traefik's health checks report to their balancer through a StatusSetter.
 */
import type { Buffer } from 'node:buffer';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { ServiceConfig } from '../config/schema/service.ts';
import type { UpstreamTlsConfig } from '../config/schema/upstream-tls.ts';
import type { Logger } from '../observe/logger.ts';
import { grpcHealthCheck } from './grpc-health.ts';
import { ResponseParser } from './response-parser.ts';
import type { ServerSpec } from './server.ts';
import { isTlsFailure, tlsConnectOptions, upstreamTlsOptions } from './tls.ts';

export interface HealthChange {
  service: string;
  server: string;
  up: boolean;
  reason: string;
}

/** What health checks may do to a server. */
export interface HealthStatusSetter {
  /** Whether the server in `slot` passes its active checks now. */
  isUp(slot: number): boolean;
  /** Sets whether it passes; `change` is given when this is a change to report (not the initial state). */
  setUp(slot: number, up: boolean, change?: HealthChange): void;
  /** Counts one check result. */
  counted(slot: number, passed: boolean): void;
}

type HealthConfig = ServiceConfig['health'];

interface Target {
  service: string;
  spec: ServerSpec;
  config: HealthConfig;
  timer: NodeJS.Timeout | undefined;
  /** Results in a row: + passes, - failures. */
  streak: number;
}

export class HealthChecker {
  private readonly targets = new Map<number, Target>();
  /** HTTP checks' sockets, cut when the checker closes. */
  private readonly pending = new Set<Socket>();
  private stopped = false;

  private readonly status: HealthStatusSetter;
  private readonly log: Logger;
  /** A service's current TLS settings: checks of https:// servers verify them as requests do. */
  private readonly tlsFor: (service: string) => UpstreamTlsConfig | undefined;

  constructor(status: HealthStatusSetter, log: Logger, tlsFor: (service: string) => UpstreamTlsConfig | undefined = () => undefined) {
    this.status = status;
    this.log = log;
    this.tlsFor = tlsFor;
  }

  /** Starts, restarts (config changed) or keeps the check of a server slot. */
  watch(service: string, spec: ServerSpec, config: HealthConfig, fresh: boolean): void {
    const existing = this.targets.get(spec.slot);
    if (existing && JSON.stringify(existing.config) === JSON.stringify(config) && existing.spec.url === spec.url) return;
    if (existing) this.unwatch(spec.slot);
    if (config.type === 'none') {
      this.status.setUp(spec.slot, true);
      return;
    }
    if (fresh && !config.start_healthy) this.status.setUp(spec.slot, false);
    // A changed check goes on from the results so far.
    const target: Target = { service, spec, config, timer: undefined, streak: existing?.spec.url === spec.url ? existing.streak : 0 };
    this.targets.set(spec.slot, target);
    this.schedule(target, fresh ? 0 : config.interval);
  }

  unwatch(slot: number): void {
    const target = this.targets.get(slot);
    if (target?.timer) clearTimeout(target.timer);
    this.targets.delete(slot);
  }

  async close(): Promise<void> {
    this.stopped = true;
    for (const slot of [...this.targets.keys()]) this.unwatch(slot);
    for (const socket of this.pending) socket.destroy();
  }

  private schedule(target: Target, delay: number): void {
    if (this.stopped) return;
    target.timer = setTimeout(() => void this.runCheck(target), delay);
    target.timer.unref();
  }

  private async runCheck(target: Target): Promise<void> {
    if (this.targets.get(target.spec.slot) !== target) return;
    const started = Date.now();
    let failure: string | undefined;
    try {
      failure = target.config.type === 'tcp' ? await this.tcpCheck(target) : target.config.type === 'grpc' ? await this.grpcCheck(target) : await this.httpCheck(target);
    } catch (err) {
      failure = (err as Error).message;
    }
    if (this.targets.get(target.spec.slot) !== target) return;
    this.applyResult(target, failure);
    this.schedule(target, Math.max(0, target.config.interval - (Date.now() - started)));
  }

  private applyResult(target: Target, failure: string | undefined): void {
    const slot = target.spec.slot;
    this.status.counted(slot, failure === undefined);
    const streak = target.streak;
    const next = failure === undefined ? (streak > 0 ? streak + 1 : 1) : streak < 0 ? streak - 1 : -1;
    target.streak = next;
    const up = this.status.isUp(slot);
    if (up && failure !== undefined && -next >= target.config.unhealthy_threshold) {
      this.report(target, false, `${-next} failed ${target.config.type} checks in a row; last: ${failure}`);
    } else if (!up && failure === undefined && next >= target.config.healthy_threshold) {
      this.report(target, true, `${next} passed ${target.config.type} checks in a row`);
    }
  }

  private report(target: Target, up: boolean, reason: string): void {
    const change: HealthChange = { service: target.service, server: target.spec.id, up, reason };
    this.log[up ? 'info' : 'warn'](
      { service: change.service, server: change.server, url: target.spec.url, reason },
      up ? 'server is healthy again' : 'server failed active health checks',
    );
    this.status.setUp(target.spec.slot, up, change);
  }

  private tcpCheck(target: Target): Promise<string | undefined> {
    const u = new URL(target.spec.url);
    const port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80);
    const host = u.hostname.replace(/^\[|\]$/g, '');
    return new Promise((resolve) => {
      const socket = u.protocol === 'https:' ? tlsConnect({ host, port, ...this.tlsOptions(target, host) }) : connect({ host, port });
      const done = (result: string | undefined) => {
        clearTimeout(timer);
        socket.destroy();
        resolve(result);
      };
      const timer = setTimeout(() => done(`connect timed out after ${target.config.timeout}ms`), target.config.timeout);
      socket.once(u.protocol === 'https:' ? 'secureConnect' : 'connect', () => done(undefined));
      socket.once('error', (err) => done(err.message));
    });
  }

  private grpcCheck(target: Target): Promise<string | undefined> {
    const host = new URL(target.spec.url).hostname.replace(/^\[|\]$/g, '');
    const tls = target.spec.url.startsWith('https:') ? this.tlsOptions(target, host) : undefined;
    return grpcHealthCheck(target.spec.url, target.config.grpc_service, target.config.timeout, tls);
  }

  /**
   * One GET on a connection of its own (`Connection: close`, as HAProxy's and nginx's checks), read by
   * the upstream pool's response parser (as strict, and hot from the data path). node:http's client,
   * run a few times a second, stayed cold (interpreted) at ~1 ms of CPU per check. One timer bounds
   * the whole check, connect included: a vanished host does not hold it for the kernel's ~3 s ARP failure.
   */
  private httpCheck(target: Target): Promise<string | undefined> {
    const { config } = target;
    const url = new URL(config.path, target.spec.url);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    // Path and Host are validated by the config schema: no spaces or line breaks.
    const head = `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${config.host || url.host}\r\nuser-agent: velocity-health-check\r\nconnection: close\r\n\r\n`;
    // An https check connects with the service's TLS settings, as requests do.
    const tls = url.protocol === 'https:' ? this.tlsOptions(target, host) : undefined;
    return new Promise((resolve, reject) => {
      const socket = tls ? tlsConnect({ host, port, ...tls }) : connect({ host, port });
      this.pending.add(socket);
      const settle = (failure: Error | undefined, result?: string) => {
        clearTimeout(timer);
        this.pending.delete(socket);
        socket.destroy();
        if (failure) reject(failure);
        else resolve(result);
      };
      const timer = setTimeout(() => settle(new Error(`no answer within ${config.timeout}ms`)), config.timeout);
      let status = 0;
      const parser = new ResponseParser({
        onInformational() {},
        onResponseHead: (response) => {
          status = response.status;
          return false;
        },
        onResponseBody() {},
        onResponseComplete() {},
      });
      const { min, max } = config.expect_status;
      const verdict = () => (status >= min && status <= max ? undefined : `status ${status}, expected ${min}-${max}`);
      socket.on('data', (chunk: Buffer) => {
        try {
          parser.execute(chunk);
        } catch (err) {
          settle(err as Error);
          return;
        }
        if (parser.complete) settle(undefined, verdict());
      });
      socket.once('end', () => {
        try {
          parser.finish();
        } catch (err) {
          settle(err as Error);
          return;
        }
        settle(undefined, verdict());
      });
      socket.on('error', (err: Error & { code?: unknown }) => {
        settle(isTlsFailure(err.code) ? new Error(`TLS: ${err.code}: ${err.message}`) : err);
      });
      socket.write(head, 'latin1');
    });
  }

  private tlsOptions(target: Target, host: string) {
    const config = this.tlsFor(target.service);
    return tlsConnectOptions(config ? upstreamTlsOptions(config) : { rejectUnauthorized: true }, host);
  }
}
