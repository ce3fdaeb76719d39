/**
 * The short soak: the same harness as `npm run soak` (bench/soak.ts), ~20k
 * requests through the real binary with health checks, metrics and the access
 * log on. Zero errors, no fd leak, RSS flat after warm-up (generous bounds).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSoak } from '../../bench/soak.ts';

test('20k requests through the binary: zero errors, no fd leak, RSS slope after warm-up under 200 MB per 100k requests', async (t) => {
  // Bounded by requests; the time bound only stops a stuck run. A clean-clone CI run at load 16 sent 7,397
  // requests in 40 s (185 a second, against thousands on a quiet machine), so the bound is far above that.
  const result = await runSoak({ requests: 20_000, seconds: 120, concurrency: 16, warmup: 8_000 });
  t.diagnostic(
    `sent ${result.sent} in ${result.elapsedMs} ms; RSS ${result.rssSamples[0]?.[1].toFixed(1)} → ${result.rssSamples.at(-1)?.[1].toFixed(1)} MB, slope ${result.slopeMbPer100k.toFixed(1)} MB/100k; fds ${result.fdsBefore} → ${result.fdsAfter}`,
  );
  assert.equal(result.errors, 0, result.errorSamples.join('\n'));
  assert.ok(result.sent >= 8_000, `enough requests for a measurement (${result.sent})`);
  // Pools toward the three servers may still open a few connections after warm-up (one per concurrent request at most).
  assert.ok(result.fdsAfter - result.fdsBefore <= 16 * 3, `fds ${result.fdsBefore} → ${result.fdsAfter}`);
  assert.ok(result.slopeMbPer100k < 200, `RSS slope ${result.slopeMbPer100k.toFixed(1)} MB per 100k requests`);
});
