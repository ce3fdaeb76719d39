/**
 * What `npm run build` leaves in dist/ (the test command builds before it tests): JavaScript
 * without comments and type declarations with them. V8 keeps every loaded module's source in
 * the heap for the process's life, two bytes a character when one character is outside
 * Latin-1 — an em dash in a comment was enough — so comments cost each thread memory, while an
 * embedder's editor reads the doc comments from the .d.ts files.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';

const dist = resolve(import.meta.dirname, '../dist');
/** The files of dist/ ending in `ext`, by path, with their text. */
const files = (ext: string) =>
  (readdirSync(dist, { recursive: true, encoding: 'utf8' }) as string[]).filter((f) => f.endsWith(ext)).map((f) => ({ f, text: readFileSync(join(dist, f), 'utf8') }));

test('dist JavaScript carries no doc comments, and no comment keeps a module two-byte', () => {
  const js = files('.js');
  assert.ok(js.length > 100, `${js.length} .js files in dist/: run npm run build`);
  const withDocs = js.filter(({ text }) => text.includes('/**')).map(({ f }) => f);
  assert.deepEqual(withDocs, []);
  // Characters outside Latin-1 may remain in string literals (messages), not in comments: a handful of modules at most.
  const twoByte = js.filter(({ text }) => /[\u0100-\uffff]/.test(text)).map(({ f }) => f);
  assert.ok(twoByte.length < 30, `${twoByte.length} two-byte modules: ${twoByte.join(', ')}`);
});

test('dist type declarations keep their doc comments for editors', () => {
  const index = readFileSync(join(dist, 'index.d.ts'), 'utf8');
  assert.match(index, /\/\*\* Velocity's public API/);
  const documented = files('.d.ts').filter(({ text }) => text.includes('/**'));
  assert.ok(documented.length > 100, `${documented.length} .d.ts files with doc comments`);
});
