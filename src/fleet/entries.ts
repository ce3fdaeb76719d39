/**
 * Keys and values under the fleet's prefix come from whoever can write to etcd (an operator's
 * etcdctl, another Velocity version), so each is decoded and checked for its shape here. One
 * that does not fit is logged with its key and ignored: thrown inside the watch, it would stop
 * every instance of the fleet at once.
 */
import type { z } from 'zod';
import type { Logger } from '../observe/logger.ts';

export interface EntryShape<T> {
  /** How many percent-encoded names follow the prefix (SERVICE/SERVER: 2). */
  names: number;
  /** The value's shape; with `json`, of the JSON document the value holds. */
  value: z.ZodType<T>;
  json?: boolean;
}

export interface Entry<T> {
  names: string[];
  /** Undefined for a deleted key. */
  value: T | undefined;
}

/** The entry at `key` (value undefined: deleted), or undefined when its key or value is not what Velocity writes. */
export function readEntry<T>(log: Logger, prefix: string, key: string, value: string | undefined, shape: EntryShape<T>): Entry<T> | undefined {
  const problem = (why: string) => {
    log.warn({ key, problem: why }, 'fleet: an entry in etcd is not what Velocity writes; ignored');
    return undefined;
  };
  const names = decodeNames(key.slice(prefix.length));
  if (!key.startsWith(prefix) || names?.length !== shape.names || names.includes('')) {
    return problem(`expected ${shape.names} percent-encoded name(s) after ${prefix}`);
  }
  if (value === undefined) return { names, value: undefined };
  let raw: unknown = value;
  if (shape.json) {
    try {
      raw = JSON.parse(value);
    } catch {
      return problem('the value is not JSON');
    }
  }
  const parsed = shape.value.safeParse(raw);
  if (!parsed.success) return problem(parsed.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : 'value'}: ${i.message}`).join('; '));
  return { names, value: parsed.data };
}

function decodeNames(rest: string): string[] | undefined {
  try {
    return rest.split('/').map(decodeURIComponent);
  } catch {
    return undefined;
  }
}
