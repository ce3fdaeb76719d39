/**
 * A restart without a refused connection: the new process listens on the same ports as the
 * running one (SO_REUSEPORT, see ports.ts), so the kernel spreads new connections over both;
 * then it tells the old one (SIGTERM, by the PID in the pid file) to stop accepting and drain,
 * and takes the pid file over.
 */
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import type { Logger } from '../observe/logger.ts';

export interface Handover {
  /** Where this process writes its PID once it listens (and removes it on exit). */
  pidFile: string;
  /** Drain the process the pid file names once this one listens. */
  takeover: boolean;
}

function runningPid(pidFile: string): number | undefined {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(pidFile, 'utf8').trim(), 10);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/** Called once this process listens: drains the old one when asked, and records this PID. */
export function takeOver(handover: Handover, log: Logger): void {
  if (handover.takeover) {
    const old = runningPid(handover.pidFile);
    if (old === undefined) log.warn({ pidFile: handover.pidFile }, 'takeover: no running Velocity in the pid file; serving alone');
    else {
      process.kill(old, 'SIGTERM');
      log.info({ pid: old }, 'takeover: listening beside the old process; it now drains and exits');
    }
  }
  writeFileSync(handover.pidFile, `${process.pid}\n`);
  process.once('exit', () => {
    // Only our own PID: after a takeover the file names the new process.
    try {
      if (readFileSync(handover.pidFile, 'utf8').trim() === String(process.pid)) unlinkSync(handover.pidFile);
    } catch {}
  });
}
