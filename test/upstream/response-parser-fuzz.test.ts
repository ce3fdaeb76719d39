/**
 * The upstream response parser against llhttp (node:http's client), on a fixed
 * seed: it never accepts a response llhttp rejects, and where both accept they
 * agree on status, headers, 1xx responses and the body. The long run is
 * `npm run fuzz:responses` (test/upstream/fuzz-responses.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fuzzResponses } from './response-fuzz.ts';

test('random and mutated responses: never accepted when llhttp rejects them, read exactly as llhttp reads them when both accept', async () => {
  const summary = await fuzzResponses(20261201, 400);
  assert.deepEqual(
    summary.disagreements.map((d) => `${d.problem} [seed ${d.seed} #${d.index} ${d.method}] ${d.bytes.slice(0, 400)}`),
    [],
  );
  // The generator must keep producing both kinds, or the comparison proves little.
  assert.ok(summary.bothAccept >= summary.cases * 0.2, `only ${summary.bothAccept} of ${summary.cases} cases were accepted by both`);
  assert.ok(summary.bothReject >= summary.cases * 0.2, `only ${summary.bothReject} of ${summary.cases} cases were rejected by both`);
});
