/**
 * The shape of src/, held by a test: no import circles, no file importing values
 * from a higher layer (types alone may be passed down), and the shared-memory
 * layout known to src/state alone. The layers are listed in test/support/import-graph.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { circles, folderOf, importGraph, upwardImports } from './support/import-graph.ts';

const src = resolve(import.meta.dirname, '../src');
const graph = importGraph(src);

test('src/ has no import circles', () => {
  assert.deepEqual(circles(graph), []);
});

test('no folder imports values from a higher one (only types are passed down)', () => {
  const upward = upwardImports(graph)
    .filter((u) => !u.typeOnly)
    .map((u) => `${u.from} → ${u.to}`);
  assert.deepEqual(upward, []);
});

test('only src/state touches shared-memory cells: no Atomics and no layout outside it', () => {
  const offenders: string[] = [];
  for (const [file, imports] of graph) {
    if (folderOf(file) === 'state') continue;
    const text = readFileSync(join(src, file), 'utf8');
    // Comments may name Atomics; code may not.
    const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
    if (/\bAtomics\s*\./.test(code)) offenders.push(`${file} uses Atomics`);
    if (imports.some((i) => i.to === 'state/layout.ts')) offenders.push(`${file} imports the cell layout`);
  }
  assert.deepEqual(offenders, []);
});

test('the checks see what they must: a circle and an upward value import are found in a made-up graph', () => {
  const made = new Map([
    ['proxy/a.ts', [{ to: 'runtime/b.ts', typeOnly: false }]],
    ['runtime/b.ts', [{ to: 'proxy/a.ts', typeOnly: true }]],
  ]);
  assert.deepEqual(circles(made), [['proxy/a.ts', 'runtime/b.ts']]);
  assert.deepEqual(upwardImports(made), [{ from: 'proxy/a.ts', to: 'runtime/b.ts', typeOnly: false }]);
});
