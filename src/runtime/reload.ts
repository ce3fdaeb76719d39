/**
 * The one reload driver. An instance is a list of subsystems (listeners, services
 * and servers, guards, access log, log store, metrics, discovery providers,
 * autoscalers, admin); a reload hands the new config to each in order. Each applies
 * its part live, or names the fields it changed that only a restart can apply: a
 * reload never answers ok while silently ignoring a change.
 *
 * Subsystems that can refuse a config (a port in use, an access-log file that cannot
 * be opened) come first, so a refused reload has changed nothing yet.
 */
import type { Config } from '../config/schema/root.ts';

export interface Subsystem {
  readonly name: string;
  /** Applies its part of `next`; answers the changed fields that wait for a restart. */
  apply(next: Config, previous: Config): Promise<readonly string[] | undefined> | readonly string[] | undefined;
}

/** Applies `next` subsystem by subsystem; answers every field that waits for a restart. */
export async function applySubsystems(subsystems: readonly Subsystem[], next: Config, previous: Config): Promise<string[]> {
  const restart: string[] = [];
  for (const subsystem of subsystems) {
    const pending = subsystem.apply(next, previous);
    const fields = pending instanceof Promise ? await pending : pending;
    if (fields) restart.push(...fields);
  }
  return restart;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The named parts of a config that differ between `previous` and `next` (JSON equality). */
export function changedFields(next: Config, previous: Config, fields: Record<string, (c: Config) => unknown>): string[] {
  return Object.entries(fields)
    .filter(([, read]) => !same(read(next), read(previous)))
    .map(([name]) => name);
}

/** A subsystem whose part of the config only applies at start: it reports every change to it. */
export function restartOnly(name: string, fields: Record<string, (c: Config) => unknown>): Subsystem {
  return { name, apply: (next, previous) => changedFields(next, previous, fields) };
}
