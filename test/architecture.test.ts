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

/**
 * Known and not yet undone: the middleware work (issue 18) landed while this test did.
 * Its registry's option schemas are built into the config schema (as balancer's are),
 * but middleware also imports config and upstream, so config, middleware and upstream
 * form one circle. The way out is balancer's: the registry and its schemas below
 * config, importing the kernel only. Nothing may be added to these lists.
 */
const KNOWN_CIRCLE_FILES = new Set([
  'config/schema/acme.ts',
  'config/schema/listeners.ts',
  'config/schema/root.ts',
  'config/schema/routes.ts',
  'config/schema/service.ts',
  'upstream/availability.ts',
  'upstream/circuit-breaker.ts',
  'upstream/outcome.ts',
  'upstream/passive-health.ts',
  'upstream/service.ts',
  'upstream/topology.ts',
]);
const KNOWN_UPWARD = new Set([
  'config/json-schema.ts → middleware/registry.ts',
  'config/load.ts → middleware/check.ts',
  'config/load.ts → middleware/head.ts',
  'config/load.ts → proxy/route-table.ts',
  'config/schema/routes.ts → middleware/registry.ts',
]);

test('src/ has no import circles (but the known one, which may only shrink)', () => {
  const unknown = circles(graph).filter((c) => !c.every((f) => KNOWN_CIRCLE_FILES.has(f) || folderOf(f) === 'middleware'));
  assert.deepEqual(unknown, []);
});

test('no folder imports values from a higher one (only types are passed down)', () => {
  const upward = upwardImports(graph)
    .filter((u) => !u.typeOnly)
    .map((u) => `${u.from} → ${u.to}`);
  assert.deepEqual(
    upward.filter((u) => !KNOWN_UPWARD.has(u)),
    [],
  );
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
