/**
 * The CLI's server process restarts itself in place (same PID) with a small V8 young
 * generation, since the main thread's cannot be changed once V8 runs; an operator's own
 * --max-semi-space-size is kept. Read from the real process's /proc command line.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { BUFFER_SCAVENGE_FLAG, MAGLEV_FLAG, MEMORY_REDUCER_FLAG, OLD_SPACE_FLAGS, SCAVENGE_FLAG, SEMI_SPACE_MB } from '../../src/runtime/young-generation.ts';
import { startVelocityProcess } from '../support/velocity.ts';

const YAML = `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [http://127.0.0.1:9]
`;

const commandLine = (pid: number | undefined) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');

test('velocity start runs with a small young generation scavenged on the main thread alone, without Maglev or the memory reducer and with a bounded old generation between full GCs, in the process that was started (same PID)', async (t) => {
  const velocity = await startVelocityProcess(t, YAML);
  const line = commandLine(velocity.child.pid);
  assert.ok(line.includes(`--max-semi-space-size=${SEMI_SPACE_MB}`), `command line: ${line.join(' ')}`);
  assert.ok(line.includes(SCAVENGE_FLAG), `command line: ${line.join(' ')}`);
  assert.ok(line.includes(MAGLEV_FLAG), `command line: ${line.join(' ')}`);
  assert.ok(line.includes(MEMORY_REDUCER_FLAG), `command line: ${line.join(' ')}`);
  for (const flag of OLD_SPACE_FLAGS) assert.ok(line.includes(flag), `command line: ${line.join(' ')}`);
  assert.ok(line.includes(BUFFER_SCAVENGE_FLAG), `command line: ${line.join(' ')}`);
});

test('with the restart young-generation flags, dead Buffers are collected before 32 MB of them wait (V8 by default lets over 64 MB wait)', () => {
  // 3 GB of 16 KB Buffers, dropped at once, with almost no other garbage: only the young Buffer bytes make scavenges happen.
  const script = `let max = 0;
for (let turn = 0; turn < 1000; turn++) {
  for (let i = 0; i < 200; i++) Buffer.allocUnsafeSlow(16384)[0] = i;
  max = Math.max(max, process.memoryUsage().arrayBuffers);
}
console.log(max);`;
  const peak = Number(execFileSync(process.execPath, [`--max-semi-space-size=${SEMI_SPACE_MB}`, BUFFER_SCAVENGE_FLAG, '-e', script], { encoding: 'utf8' })) / 2 ** 20;
  assert.ok(peak < 32, `${peak.toFixed(1)} MB of Buffers at most`);
});

test("an operator's own --max-semi-space-size is kept: no restart", async (t) => {
  const velocity = await startVelocityProcess(t, YAML, { env: { NODE_OPTIONS: '--max-semi-space-size=8' } });
  assert.ok(!commandLine(velocity.child.pid).some((a) => a.startsWith('--max-semi-space-size')), `command line: ${commandLine(velocity.child.pid).join(' ')}`);
});
