/** bench/perf.ts's kernel-time table: perf's kernel stacks sorted by what the process was doing, in µs per request. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { involuntarySwitches, kernelTimeByCategory } from '../bench/kernel-time.ts';

/** One `perf script -F tid,ip,sym` sample: the thread id line, then kernel frames from the leaf up, then one user frame. */
const sample = (...kernel: string[]) => [' 4242 ', ...kernel.map((f, i) => `\tffffffff8100${i}000 ${f}`), '\t          6f0e76 __GI___libc_write'].join('\n');

test('a preempted write counts as switched out, not as the write; user-only samples count in no kernel row', () => {
  const script = [
    sample('pvm_irq_enable', 'finish_task_switch.isra.0', '__schedule', 'schedule', 'exit_to_user_mode_loop', 'do_syscall_64', 'entry_SYSCALL_64_after_hwframe'),
    sample('tcp_v4_rcv', 'net_rx_action', 'handle_softirqs', 'tcp_sendmsg_locked', 'sock_write_iter', 'vfs_write', 'ksys_write', 'do_syscall_64'),
    sample('ext4_buffered_write_iter', 'vfs_write', 'ksys_write', 'do_syscall_64'),
    sample(),
  ].join('\n\n');
  const rows = Object.fromEntries(kernelTimeByCategory(script, 40).map((r) => [r.name, r.us]));
  assert.deepEqual(rows, { 'switched out after a syscall (preempted)': 10, 'socket write (+ receiver in softirq)': 10, 'file write (access log)': 10 });
});

test('involuntary switches are summed over the threads of a running process, 0 for none', () => {
  assert.ok(involuntarySwitches(process.pid) >= 0);
  assert.equal(involuntarySwitches(undefined), 0);
});
