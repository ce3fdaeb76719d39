/**
 * The long differential fuzzing run of the HTTP/1.1 request parser against
 * llhttp (node:http): `npm run fuzz -- [seconds] [seed]`, bounded in time
 * (default 60 s). Prints every disagreement with its seed and case index, so it
 * can be replayed and kept as a regression test; exits 1 when there is one.
 */
import { HEAD_LIMIT, LlhttpOracle, runDifferential } from '../test/support/http1-differential.ts';

const seconds = Number(process.argv[2] ?? 60);
const seed = Number(process.argv[3] ?? Date.now() % 2 ** 31);
if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 24 * 3600) {
  console.error('usage: npm run fuzz -- [seconds (1..86400)] [seed]');
  process.exit(2);
}
const oracle = new LlhttpOracle();
await oracle.start();
const started = Date.now();
const result = await runDifferential(oracle, seed, Number.MAX_SAFE_INTEGER, started + seconds * 1000);
await oracle.stop();
const rate = Math.round(result.cases / ((Date.now() - started) / 1000));
console.log(
  `seed ${seed}: ${result.cases} cases in ${seconds} s (${rate}/s, head limit ${HEAD_LIMIT} B): both accepted ${result.bothAccepted}, only llhttp accepted ${result.oursRefusedOnly}, disagreements ${result.failures.length}`,
);
for (const f of result.failures.slice(0, 50)) console.log(`  #${f.index} ${JSON.stringify(f.bytes)}\n    ${f.problem}`);
process.exit(result.failures.length > 0 ? 1 : 0);
