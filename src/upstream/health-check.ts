/**
 * Active health checks, run once per process by the control plane (not per
 * thread). A checker knows nothing of where health is kept: it reports each
 * result and each change (logged here with its reason) through HealthStatusSetter,
 * as Traefik's health checks report to their balancer through a StatusSetter.
 */
import { connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Agent } from 'undici';
import type { ServiceConfig } from '../config/schema/service.ts';
import type { UpstreamTlsConfig } from '../config/schema/upstream-tls.ts';
import type { Logger } from '../observe/logger.ts';
import { undiciClient } from '../optional-module.ts';
import { grpcHealthCheck } from './grpc-health.ts';
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
  /** Plain-HTTP checks, one agent per check timeout: undici's abort signal does not cut a
   * pending connect, so the connect timeout itself must be the check's timeout (a vanished
   * host otherwise holds a check for the kernel's ~3 s ARP failure). */
  private readonly agents = new Map<number, Agent>();
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
    await Promise.all([...this.agents.values()].map((a) => a.close()));
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

  private async httpCheck(target: Target): Promise<string | undefined> {
    const { config } = target;
    const url = new URL(config.path, target.spec.url);
    const headers: Record<string, string> = { 'user-agent': 'velocity-health-check' };
    if (config.host) headers.host = config.host;
    // An https check uses a connection with the service's TLS settings, closed after the check.
    // undici loads with the first http check.
    const { Agent, request } = undiciClient();
    const tlsAgent =
      url.protocol === 'https:'
        ? new Agent({ keepAliveTimeout: 1, pipelining: 0, connectTimeout: config.timeout, connect: this.tlsOptions(target, url.hostname.replace(/^\[|\]$/g, '')) })
        : undefined;
    try {
      const res = await request(url, {
        method: 'GET',
        headers,
        dispatcher: tlsAgent ?? this.agentFor(config.timeout),
        signal: AbortSignal.timeout(config.timeout),
        headersTimeout: config.timeout,
        bodyTimeout: config.timeout,
      });
      await res.body.dump();
      const { min, max } = config.expect_status;
      return res.statusCode >= min && res.statusCode <= max ? undefined : `status ${res.statusCode}, expected ${min}-${max}`;
    } catch (err) {
      const { code, name } = err as { code?: unknown; name?: unknown };
      if (name === 'TimeoutError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
        throw new Error(`no answer within ${config.timeout}ms`);
      }
      throw isTlsFailure(code) ? new Error(`TLS: ${code}: ${(err as Error).message}`) : err;
    } finally {
      void tlsAgent?.destroy().catch(() => undefined);
    }
  }

  private agentFor(timeout: number): Agent {
    let agent = this.agents.get(timeout);
    if (!agent) {
      agent = new (undiciClient().Agent)({ keepAliveTimeout: 1, pipelining: 0, connectTimeout: timeout });
      this.agents.set(timeout, agent);
    }
    return agent;
  }

  private tlsOptions(target: Target, host: string) {
    const config = this.tlsFor(target.service);
    return tlsConnectOptions(config ? upstreamTlsOptions(config) : { rejectUnauthorized: true }, host);
  }
}
