/** The process log (not the access log): JSON lines via pino. */
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const level = options.level ?? process.env.VELOCITY_LOG_LEVEL ?? 'info';
  return pino(
    { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime },
    (options.destination as pino.DestinationStream | undefined) ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** A logger that discards everything, for embedding and tests that don't care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
