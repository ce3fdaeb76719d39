/** A real pino logger whose JSON lines are kept in memory, so tests can assert what Velocity logged. */
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Logger } from '../../src/observe/logger.ts';

export interface CapturedLog {
  logger: Logger;
  lines: Record<string, unknown>[];
  /** Lines whose msg matches. */
  find(pattern: RegExp): Record<string, unknown>[];
}

export function captureLog(level = 'debug'): CapturedLog {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  const logger = pino({ level, base: undefined }, stream);
  return { logger, lines, find: (pattern) => lines.filter((l) => pattern.test(String(l.msg))) };
}
