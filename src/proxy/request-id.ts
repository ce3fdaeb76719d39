/**
 * Request ids (X-Request-Id, the record's requestId): random UUIDs (version 4, RFC 9562), made a
 * batch at a time. crypto.randomUUID builds each id from twenty string pieces; here one random fill
 * serves a batch, one latin1 string a run of ids, and an id is a slice of that string.
 */
import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';

/**
 * Ids per random fill: each randomFillSync call costs ~4 µs of setup (a crypto job) whatever its size,
 * so 64 ids a fill spent half of their time there (123 ns an id; 60 ns at 1024). A batch is 16 KiB
 * of random bytes and 36 KiB of text.
 */
const BATCH = 1024;
/**
 * Ids per string. A slice keeps its whole string alive, and a string that outlives two scavenges is
 * promoted. With a scavenge every ~600 requests (4 MB semi-spaces, ~7 KB of garbage a request), the
 * batch's 1024 ids as one 36 KiB string were: 27 of the ~50 bytes per request that reached the old
 * generation and brought on its mark-compacts (a pause of several ms each). A run of 128 ids lives
 * ~180 requests (with the 50 or so in flight): never promoted. Its toString costs ~3 ns an id.
 */
const RUN = 128;
const TEXT = 36;
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/** Where each of the 16 bytes goes in "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx". */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

const random = Buffer.alloc(16 * BATCH);
const text = Buffer.alloc(TEXT * BATCH);
/** The ids of `text` made into strings so far. */
let made = BATCH;
/** The current run of ids as one string, and the next id in it. */
let run = '';
let next = RUN;

/**
 * Writes the ids of the random bytes into `text`. A function that ends with its loop: V8 compiles the
 * loop while it runs (on-stack replacement) before the code after it ever ran, and that code, without
 * type feedback, threw each later refill out of the compiled loop (a deopt per refill, `--trace-deopt`).
 */
function format(): void {
  for (let id = 0; id < BATCH; id++) {
    const from = id * 16;
    const to = id * TEXT;
    // The version nibble (4) and the variant bits (10).
    random[from + 6] = ((random[from + 6] as number) & 0x0f) | 0x40;
    random[from + 8] = ((random[from + 8] as number) & 0x3f) | 0x80;
    for (let i = 0; i < 16; i++) {
      const byte = random[from + i] as number;
      const at = to + (AT[i] as number);
      text[at] = HEX_DIGITS[byte >> 4] as number;
      text[at + 1] = HEX_DIGITS[byte & 15] as number;
    }
    text[to + 8] = 45;
    text[to + 13] = 45;
    text[to + 18] = 45;
    text[to + 23] = 45;
  }
}

function nextRun(): void {
  if (made === BATCH) {
    randomFillSync(random);
    format();
    made = 0;
  }
  run = text.toString('latin1', made * TEXT, (made + RUN) * TEXT);
  made += RUN;
  next = 0;
}

/** A new random UUID, as crypto.randomUUID() would give. */
export function newRequestId(): string {
  if (next === RUN) nextRun();
  const at = next++ * TEXT;
  return run.slice(at, at + TEXT);
}
