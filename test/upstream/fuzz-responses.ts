/**
 * Long differential run of the upstream response parser against llhttp:
 * `npm run fuzz:responses -- [cases] [seed]` (defaults: 50,000 cases, a random seed).
 * Prints every disagreement with its seed and index, and exits 1 if there was one.
 */
import { fuzzResponses } from './response-fuzz.ts';

const cases = Number(process.argv[2] ?? 50_000);
const seed = Number(process.argv[3] ?? Math.floor(Math.random() * 2 ** 31));
const batch = 2_000;
let failed = 0;
const started = Date.now();
for (let done = 0; done < cases; done += batch) {
  const s = await fuzzResponses(seed + done, Math.min(batch, cases - done));
  for (const d of s.disagreements) {
    failed++;
    console.log(`${d.problem}\n  seed ${d.seed} index ${d.index} ${d.method} ${d.bytes}`);
  }
  console.log(
    `seed ${seed + done}: ${s.cases} cases, both accept ${s.bothAccept}, both reject ${s.bothReject}, only llhttp accepts ${s.onlyNodeAccepts}, disagreements ${s.disagreements.length}`,
  );
}
console.log(`${cases} cases in ${((Date.now() - started) / 1000).toFixed(1)} s, ${failed} disagreements`);
process.exitCode = failed > 0 ? 1 : 0;
