/**
 * The one reload driver. An instance is a list of subsystems (listeners, services
 * and servers, guards, access log, log store, metrics, discovery providers,
 * autoscalers, admin); a reload hands the new config to each in order. Each applies
 * its part live, or names the fields it changed that only a restart can apply: a
 * reload never answers ok while silently ignoring a change.
 *
 * Each subsystem names the top-level sections it takes care of. A changed section
 * no subsystem names is reported as waiting for a restart: a section added to the
 * schema without a place in the driver is never skipped silently.
 *
 * Subsystems that can refuse a config (a port in use, an access-log file that cannot
 * be opened) come first, so a refused reload has changed nothing yet.
 */
import type { Config } from '../config/schema/root.ts';

/** A top-level section of the config. */
export type ConfigSection = keyof Config;

export interface Subsystem {
  readonly name: string;
  /** The top-level sections it applies live or names as waiting for a restart. */
  readonly sections: readonly ConfigSection[];
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
  return [...restart, ...unclaimedChanges(subsystems, next, previous)];
}

/** Changed sections no subsystem takes care of. */
export function unclaimedChanges(subsystems: readonly Subsystem[], next: Config, previous: Config): string[] {
  const claimed = new Set(subsystems.flatMap((s) => s.sections));
  const sections = new Set([...Object.keys(next), ...Object.keys(previous)] as ConfigSection[]);
  return [...sections].filter((section) => !claimed.has(section) && !same(next[section], previous[section]));
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The named parts of a config that differ between `previous` and `next` (JSON equality). */
export function changedFields(next: Config, previous: Config, fields: Record<string, (c: Config) => unknown>): string[] {
  return Object.entries(fields)
    .filter(([, read]) => !same(read(next), read(previous)))
    .map(([name]) => name);
}

/** A subsystem whose part of the config only applies at start: it reports every change to it. */
export function restartOnly(name: string, sections: readonly ConfigSection[], fields: Record<string, (c: Config) => unknown>): Subsystem {
  return { name, sections, apply: (next, previous) => changedFields(next, previous, fields) };
}
