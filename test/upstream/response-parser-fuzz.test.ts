/**
 * The upstream response parser against llhttp (node:http's client), on a fixed
 * seed: it never accepts a response llhttp rejects, and where both accept they
 * agree on status, headers, 1xx responses and the body. The long run is
 * `npm run fuzz:responses` (test/upstream/fuzz-responses.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compare, fuzzResponses, parseOurs, prng, RawResponder } from './response-fuzz.ts';

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

test('chunk extensions: a quote only opens a value and only ";" or the line end follows it, names are not empty, one "=": never accepted when llhttp rejects them', async () => {
  const extensions = [
    ';a=b',
    ';name',
    ';a="q"',
    ';a="q";b',
    ';a=',
    ';a="q',
    ';a"q"',
    ';"q"',
    ';a="q"x',
    ';a="q"=',
    ';a=b"q"',
    ';=x',
    ';;',
    ';a;;b',
    ';a==b',
    ';a="q""r"',
    ';a="\\q"',
    ';',
    ';a=b=c',
  ];
  const responder = new RawResponder();
  await responder.start();
  try {
    let accepted = 0;
    for (const ext of extensions) {
      const c = { method: 'GET' as const, bytes: Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4${ext}\r\nbody\r\n0\r\n\r\n`, 'latin1') };
      const ours = parseOurs(c, prng(ext.length));
      if (ours.ok) accepted++;
      assert.equal(compare(ours, await responder.parseWithNode(c)), undefined, ext);
    }
    // The usual forms still pass.
    assert.ok(accepted >= 5, `only ${accepted} accepted`);
  } finally {
    await responder.close();
  }
});
