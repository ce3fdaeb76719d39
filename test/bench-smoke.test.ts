/** `npm run bench --quick` runs end to end and prints its table (no timing is asserted). */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { serviceUnavailable } from './support/require-service.ts';

test('the benchmark runs every contender and prints a table with ratios against nginx', async (t) => {
  const script = fileURLToPath(new URL('../bench/run.ts', import.meta.url));
  const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
    execFile(process.execPath, [script, '--quick'], { timeout: 170_000, maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
  if (code !== 0 && /is not installed/.test(out)) return serviceUnavailable(t, 'nginx/wrk', out.trim());
  assert.equal(code, 0, out);
  for (const name of ['direct', 'nginx', 'haproxy', 'node-http-proxy', 'velocity', 'velocity+features'])
    assert.match(out, new RegExp(`\\| GET c=50 \\| ${name.replace('+', '\\+')} \\| \\d+ \\|`), name);
  assert.match(out, /velocity \/ nginx: \d+\.\d+/);
  assert.match(out, /results: .*bench-.*\.json/);
  assert.doesNotMatch(out, /\| GET c=50 \| velocity \| \d+ \| [\d.]+ \| [\d.]+ \| [1-9]/, 'no errors through Velocity');
});
