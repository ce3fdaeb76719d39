/**
 * Scales a service's instances (processes or containers) toward a target metric
 * with the usual proportional rule, desired = ceil(current × metric / target),
 * clamped to [min, max]. Scale-up waits out `scale_up_cooldown` after any change;
 * scale-down waits out `scale_down_cooldown` and only goes as low as the highest
 * count wanted during `stabilization_window`, so a dip does not cause a flap.
 */
import type { AutoscaleConfig } from '../config/schema/discovery.ts';
import type { Logger } from '../observe/logger.ts';

export interface Scalable {
  /** Instances running or starting. */
  readonly count: number;
  scaleTo(count: number): Promise<void>;
}

export interface ScaleMetric {
  /** The current value of the configured target metric, per server; undefined when unknown. */
  read(now: number): number | undefined;
}

export interface ScaleDecision {
  at: string;
  service: string;
  metric: string;
  value: number | undefined;
  target: number;
  current: number;
  wanted: number;
  desired: number;
  action: 'scale-up' | 'scale-down' | 'hold';
  reason: string;
}

export function targetOf(config: AutoscaleConfig): { metric: string; target: number } {
  const t = config.target;
  if (t.in_flight_per_server !== undefined) return { metric: 'in_flight_per_server', target: t.in_flight_per_server };
  if (t.rps_per_server !== undefined) return { metric: 'rps_per_server', target: t.rps_per_server };
  return { metric: 'p95_latency_ms', target: t.p95_latency as number };
}

/** The pure decision: what count to ask for now, and why. */
export function decide(
  config: AutoscaleConfig,
  state: { current: number; value: number | undefined; now: number; lastChange: number; recentWanted: readonly { at: number; wanted: number }[] },
): { desired: number; wanted: number; action: ScaleDecision['action']; reason: string } {
  const { target } = targetOf(config);
  const { current, value, now } = state;
  const clamp = (n: number) => Math.min(config.max, Math.max(config.min, n));
  if (value === undefined)
    return {
      desired: clamp(current),
      wanted: clamp(current),
      action: clamp(current) === current ? 'hold' : current < config.min ? 'scale-up' : 'scale-down',
      reason: 'no measurement yet',
    };
  const wanted = clamp(Math.ceil((Math.max(current, 1) * value) / target));
  if (wanted > current) {
    if (now - state.lastChange < config.scale_up_cooldown) return { desired: current, wanted, action: 'hold', reason: 'scale-up cooldown' };
    return { desired: wanted, wanted, action: 'scale-up', reason: `metric ${value.toFixed(2)} above target ${target}` };
  }
  if (wanted < current) {
    const windowStart = now - config.stabilization_window;
    const stable = Math.max(wanted, ...state.recentWanted.filter((w) => w.at >= windowStart).map((w) => w.wanted));
    if (stable >= current) return { desired: current, wanted, action: 'hold', reason: 'stabilization window: a higher count was wanted recently' };
    if (now - state.lastChange < config.scale_down_cooldown) return { desired: current, wanted, action: 'hold', reason: 'scale-down cooldown' };
    return { desired: stable, wanted, action: 'scale-down', reason: `metric ${value.toFixed(2)} below target ${target}` };
  }
  return { desired: current, wanted, action: 'hold', reason: 'at target' };
}

export class Autoscaler {
  readonly decisions: ScaleDecision[] = [];
  private readonly recentWanted: { at: number; wanted: number }[] = [];
  private lastChange = 0;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly service: string;
  private readonly config: AutoscaleConfig;
  private readonly target: Scalable;
  private readonly metric: ScaleMetric;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(service: string, config: AutoscaleConfig, target: Scalable, metric: ScaleMetric, log: Logger, now: () => number = Date.now) {
    this.service = service;
    this.config = config;
    this.target = target;
    this.metric = metric;
    this.log = log.child({ service, component: 'autoscaler' });
    this.now = now;
  }

  start(): void {
    this.lastChange = this.now();
    // A failed scaling step (engine gone, process that will not start) is logged; the next tick tries again.
    this.timer = setInterval(
      () => void this.tick().catch((err: unknown) => this.log.error({ err: (err as Error).message }, 'autoscaler: scaling failed; will retry')),
      this.config.interval,
    );
    this.timer.unref();
  }

  /** One evaluation; exported for tests and called by the timer. */
  async tick(): Promise<ScaleDecision | undefined> {
    if (this.busy) return undefined;
    this.busy = true;
    try {
      const now = this.now();
      const current = this.target.count;
      const value = this.metric.read(now);
      const verdict = decide(this.config, { current, value, now, lastChange: this.lastChange, recentWanted: this.recentWanted });
      this.recentWanted.push({ at: now, wanted: verdict.wanted });
      while (this.recentWanted.length > 0 && (this.recentWanted[0] as { at: number }).at < now - this.config.stabilization_window) this.recentWanted.shift();
      const { metric, target } = targetOf(this.config);
      const decision: ScaleDecision = {
        at: new Date(now).toISOString(),
        service: this.service,
        metric,
        value,
        target,
        current,
        wanted: verdict.wanted,
        desired: verdict.desired,
        action: verdict.action,
        reason: verdict.reason,
      };
      this.decisions.push(decision);
      if (this.decisions.length > 100) this.decisions.shift();
      if (verdict.desired !== current) {
        this.log.info(decision, `autoscaler: ${verdict.action} ${current} → ${verdict.desired}`);
        this.lastChange = now;
        await this.target.scaleTo(verdict.desired);
      } else this.log.debug(decision, 'autoscaler: hold');
      return decision;
    } finally {
      this.busy = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
