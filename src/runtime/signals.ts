/** Process signals for a CLI-run Velocity: SIGTERM/SIGINT stop gracefully, SIGHUP reloads. */
import type { Logger } from '../observe/logger.ts';
import type { Velocity } from './instance.ts';

export function installSignalHandlers(velocity: Velocity, log: Logger): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'stopping');
    velocity.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    velocity.reopenLogs();
    void velocity.reload();
  });
  process.on('SIGUSR1', () => velocity.reopenLogs());
  // After an uncaught exception the process's state is unknown (Node says resuming is unsafe): log
  // it and exit non-zero, so a supervisor (systemd, Docker, Kubernetes) starts a clean one.
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception; exiting so a supervisor restarts Velocity');
    log.flush?.();
    process.exit(70);
  });
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection (kept running)'));
}
