/**
 * What a process's kernel time was spent on, per request: perf's kernel stacks sorted by what the
 * process was doing (a socket write with the receiver's TCP work done in the same call, a socket
 * read, the access-log file write, waiting in epoll, a page fault, being switched out on the way
 * back from a syscall …), and how often it was switched out against its will.
 *
 * Why it exists: Velocity and a raw-socket Node proxy make the same syscalls per request, yet
 * Velocity spent ~9 µs more system time per request. The stacks showed where: being preempted at
 * the end of write() by the peer that write woke (wrk or a backend on the same core), which costs
 * ~10 µs per switch in this VM; a proxy that spends more user time per request is preempted more
 * often (docs/performance.md, "Where the system time goes").
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Involuntary context switches of all a process's threads so far (0 when the process is gone). */
export function involuntarySwitches(pid: number | undefined): number {
  if (pid === undefined) return 0;
  let total = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const m = /^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'));
      total += Number(m?.[1] ?? 0);
    }
  } catch {
    // The process or a thread ended between the listing and the read: count what was read.
  }
  return total;
}

/** The first rule whose frames a kernel stack holds names it; checked in this order. */
const CATEGORIES: readonly [name: string, test: (frames: ReadonlySet<string>) => boolean][] = [
  ['page fault', (f) => f.has('asm_exc_page_fault')],
  ['interrupt (timer, IPI)', (f) => [...f].some((s) => s.startsWith('asm_sysvec_') || s === 'asm_common_interrupt')],
  ['switched out after a syscall (preempted)', (f) => f.has('exit_to_user_mode_loop') && (f.has('__schedule') || f.has('schedule'))],
  ['file write (access log)', (f) => [...f].some((s) => s.endsWith('_file_write_iter') || s === 'ext4_buffered_write_iter' || s === 'generic_perform_write')],
  ['socket write (+ receiver in softirq)', (f) => f.has('sock_write_iter') || f.has('ksys_write') || f.has('do_writev')],
  ['socket read', (f) => f.has('sock_read_iter') || f.has('sock_recvmsg') || f.has('ksys_read')],
  ['epoll wait', (f) => f.has('do_epoll_wait')],
  ['futex (helper threads)', (f) => f.has('do_futex')],
  // Samples held while interrupts were off land where they come back on: at syscall entry and exit.
  ['syscall entry and exit', (f) => f.has('do_syscall_64')],
];

/**
 * Kernel time per request by category, from `perf script -F tid,ip,sym` text: each category's share of
 * all samples × the measured CPU µs per request (so the sampling event's unit does not matter).
 */
export function kernelTimeByCategory(script: string, cpuUsPerRequest: number): { name: string; us: number }[] {
  const counts = new Map<string, number>();
  let samples = 0;
  for (const block of script.split('\n\n')) {
    const lines = block.trim().split('\n').slice(1);
    if (lines.length === 0) continue;
    samples++;
    const kernel = new Set<string>();
    for (const line of lines) {
      const [ip, sym] = line.trim().split(/\s+/, 2);
      if (ip?.startsWith('ffffffff') && sym) kernel.add(sym);
    }
    if (kernel.size === 0) continue;
    const name = CATEGORIES.find(([, test]) => test(kernel))?.[0] ?? 'other kernel';
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts].map(([name, n]) => ({ name, us: samples > 0 ? (n / samples) * cpuUsPerRequest : 0 })).sort((a, b) => b.us - a.us);
}
