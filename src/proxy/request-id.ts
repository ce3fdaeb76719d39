/**
 * Request ids (X-Request-Id, the record's requestId): random UUIDs (version 4, RFC 9562), made a
 * batch at a time. crypto.randomUUID builds each id from twenty string pieces; here one random fill
 * and one latin1 string serve a batch, and an id is a slice of that string.
 */
import { randomFillSync } from 'node:crypto';

/**
 * Ids per random fill: each randomFillSync call costs ~4 µs of setup (a crypto job) whatever its size,
 * so 64 ids a fill spent half of their time there (123 ns an id; 60 ns at 1024). A batch is 16 KiB
 * of random bytes and a 36 KiB string.
 */
const BATCH = 1024;
const TEXT = 36;
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/** Where each of the 16 bytes goes in "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx". */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

const random = Buffer.alloc(16 * BATCH);
const text = Buffer.alloc(TEXT * BATCH);
let batch = '';
let next = BATCH;

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

function refill(): void {
  randomFillSync(random);
  format();
  batch = text.toString('latin1');
  next = 0;
}

/** A new random UUID, as crypto.randomUUID() would give. */
export function newRequestId(): string {
  if (next === BATCH) refill();
  const at = next++ * TEXT;
  return batch.slice(at, at + TEXT);
}
