/**
 * The access-log file is written in batches of 64 KiB, or a tenth of a second
 * after the first pending line (one system call for a hundred lines and more under
 * load), and nothing pending is lost when the process exits.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { AccessLogSink } from '../../src/observe/access-log.ts';
import { eventually } from '../support/velocity.ts';

function tempFile(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'velocity-sink-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'access.log');
}

const failOnError = (err: Error) => {
  throw err;
};

test('a burst past 64 KiB is written at once in one piece; the rest follows by itself', async (t) => {
  const file = tempFile(t);
  const sink = new AccessLogSink(file, failOnError);
  t.after(() => sink.close());
  const lines = Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(4, '0')} ${'x'.repeat(94)}`);
  // No event-loop turn between the writes: what is on disk now was written because the batch filled.
  for (const line of lines) sink.write(line);
  const written = statSync(file).size;
  assert.ok(written >= 64 * 1024 && written < lines.length * 100, `one 64 KiB batch is on disk before the rest (${written} bytes)`);
  assert.equal(readFileSync(file, 'utf8').slice(0, 100), `${lines[0]}\n`, 'whole lines, in order');
  await eventually(() => statSync(file).size === lines.length * 100, 30_000, 'the rest of the lines written without another request');
  assert.equal(readFileSync(file, 'utf8'), `${lines.join('\n')}\n`);
});

test('a quiet log still gets its line soon, and close writes what is pending', async (t) => {
  const file = tempFile(t);
  const sink = new AccessLogSink(file, failOnError);
  sink.write('{"one":1}');
  await eventually(() => readFileSync(file, 'utf8') === '{"one":1}\n', 30_000, 'a lone line is written without more traffic');
  sink.write('{"two":2}');
  sink.close();
  assert.equal(readFileSync(file, 'utf8'), '{"one":1}\n{"two":2}\n');
});

test('lines still pending when the process exits are written', (t) => {
  const file = tempFile(t);
  const module = new URL('../../src/observe/access-log.ts', import.meta.url).href;
  const script = `
    const { AccessLogSink } = await import(${JSON.stringify(module)});
    const sink = new AccessLogSink(${JSON.stringify(file)}, (err) => { throw err; });
    sink.write('{"a":1}');
    sink.write('{"b":2}');
    process.exit(0);
  `;
  execFileSync(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit', timeout: 120_000 });
  assert.equal(readFileSync(file, 'utf8'), '{"a":1}\n{"b":2}\n');
});
