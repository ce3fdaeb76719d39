/**
 * Any internal error Velocity logs (a TypeError, an `INTERNAL` answer) is a bug,
 * even in a test whose own assertions pass. The starters in velocity.ts watch
 * what Velocity logs and fail the test at its end when such a line appeared.
 */
import type { Logger } from '../../src/observe/logger.ts';

/** What an internal error looks like in a log line or logged object. */
export const INTERNAL_ERROR =
  /\b(?:TypeError|ReferenceError|RangeError|SyntaxError)\b|is not a function|Cannot read propert(?:y|ies) of (?:undefined|null)|"INTERNAL"|\bINTERNAL\b/;

const WATCHED_LEVELS = new Set(['warn', 'error', 'fatal']);

function describeCall(args: unknown[]): string {
  return args
    .map((a) => {
      if (a instanceof Error) return `${a.name}: ${a.message}`;
      if (a && typeof a === 'object') {
        return JSON.stringify(a, (_k, v: unknown) => (v instanceof Error ? { type: v.name, message: v.message, code: (v as { code?: unknown }).code } : v));
      }
      return String(a);
    })
    .join(' ');
}

/**
 * The same logger, but every warn/error/fatal call (on it and on its children) is
 * checked, whatever the level it writes at: a silent logger is watched too.
 */
export function watchLogger(logger: Logger, found: string[]): Logger {
  return new Proxy(logger, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (prop === 'child') return (...args: unknown[]) => watchLogger((value as (...a: unknown[]) => Logger).apply(target, args), found);
      if (typeof prop === 'string' && WATCHED_LEVELS.has(prop)) {
        return (...args: unknown[]) => {
          const line = describeCall(args);
          if (INTERNAL_ERROR.test(line)) found.push(`${prop}: ${line}`);
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
}

/** Lines of a process's output (JSON log lines, access-log lines) that report an internal error. */
export function internalErrorLines(output: string): string[] {
  return output.split('\n').filter((line) => INTERNAL_ERROR.test(line));
}

/** Throws (failing the test whose cleanup calls it) when internal errors were seen. */
export function assertNoInternalErrors(found: readonly string[], who: string): void {
  if (found.length === 0) return;
  const shown = found.slice(0, 5).map((l) => `  ${l.slice(0, 600)}`);
  throw new Error(`${who} logged ${found.length} internal error(s) — an internal error is always a bug:\n${shown.join('\n')}`);
}
