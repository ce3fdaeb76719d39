/** The autoscaler's inputs, read from shared state (exact across threads) or from request records. */
import type { AutoscaleConfig } from '../config/schema/discovery.ts';
import type { RequestRecord } from '../observe/events.ts';
import type { ControlPlane } from '../upstream/control-plane.ts';
import type { ScaleMetric } from './autoscaler.ts';

function liveSlots(control: ControlPlane, service: string): number[] {
  return control
    .servers(service)
    .filter((s) => s.removeBy === undefined)
    .map((s) => s.spec.slot);
}

export function inFlightPerServer(control: ControlPlane, service: string): ScaleMetric {
  return {
    read() {
      const slots = liveSlots(control, service);
      if (slots.length === 0) return undefined;
      const total = slots.reduce((sum, slot) => sum + control.state.server(slot).inFlight, 0);
      return total / slots.length;
    },
  };
}

export function rpsPerServer(control: ControlPlane, service: string): ScaleMetric {
  let last: { at: number; total: number } | undefined;
  return {
    read(now) {
      const slots = liveSlots(control, service);
      const total = control.servers(service).reduce((sum, s) => sum + control.state.server(s.spec.slot).requests, 0);
      const previous = last;
      last = { at: now, total };
      if (!previous || slots.length === 0 || now <= previous.at) return undefined;
      return Math.max(0, total - previous.total) / ((now - previous.at) / 1000) / slots.length;
    },
  };
}

/** p95 of request durations over the last evaluation interval(s), from finished-request records. */
export function p95Latency(service: string, windowMs: number, subscribe: (fn: (r: RequestRecord) => void) => () => void): ScaleMetric & { close(): void } {
  const samples: { at: number; ms: number }[] = [];
  const unsubscribe = subscribe((r) => {
    if (r.service !== service) return;
    samples.push({ at: r.time, ms: r.totalMs });
    if (samples.length > 50_000) samples.shift();
  });
  return {
    read(now) {
      while (samples.length > 0 && (samples[0] as { at: number }).at < now - windowMs) samples.shift();
      if (samples.length === 0) return undefined;
      const sorted = samples.map((s) => s.ms).sort((a, b) => a - b);
      return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.95) - 1)];
    },
    close: unsubscribe,
  };
}

export function metricFor(
  config: AutoscaleConfig,
  control: ControlPlane,
  service: string,
  subscribe: (fn: (r: RequestRecord) => void) => () => void,
): ScaleMetric & { close?(): void } {
  if (config.target.in_flight_per_server !== undefined) return inFlightPerServer(control, service);
  if (config.target.rps_per_server !== undefined) return rpsPerServer(control, service);
  return p95Latency(service, Math.max(config.interval * 3, 5_000), subscribe);
}
