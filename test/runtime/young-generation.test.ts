/**
 * The CLI's server process restarts itself in place (same PID) with a small V8 young
 * generation, since the main thread's cannot be changed once V8 runs; an operator's own
 * --max-semi-space-size is kept. Read from the real process's /proc command line.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { MAGLEV_FLAG, OLD_SPACE_FLAGS, SCAVENGE_FLAG, SEMI_SPACE_MB } from '../../src/runtime/young-generation.ts';
import { startVelocityProcess } from '../support/velocity.ts';

const YAML = `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [http://127.0.0.1:9]
`;

const commandLine = (pid: number | undefined) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');

test('velocity start runs with a small young generation scavenged on the main thread alone, without Maglev and with a bounded old generation between full GCs, in the process that was started (same PID)', async (t) => {
  const velocity = await startVelocityProcess(t, YAML);
  const line = commandLine(velocity.child.pid);
  assert.ok(line.includes(`--max-semi-space-size=${SEMI_SPACE_MB}`), `command line: ${line.join(' ')}`);
  assert.ok(line.includes(SCAVENGE_FLAG), `command line: ${line.join(' ')}`);
  assert.ok(line.includes(MAGLEV_FLAG), `command line: ${line.join(' ')}`);
  for (const flag of OLD_SPACE_FLAGS) assert.ok(line.includes(flag), `command line: ${line.join(' ')}`);
});

test("an operator's own --max-semi-space-size is kept: no restart", async (t) => {
  const velocity = await startVelocityProcess(t, YAML, { env: { NODE_OPTIONS: '--max-semi-space-size=8' } });
  assert.ok(!commandLine(velocity.child.pid).some((a) => a.startsWith('--max-semi-space-size')), `command line: ${commandLine(velocity.child.pid).join(' ')}`);
});
