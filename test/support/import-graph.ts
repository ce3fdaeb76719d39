/**
 * The import graph of src/: which file imports which (type-only imports included:
 * they tie files together just as much for a reader), the import circles among
 * them, and imports that go from a lower folder to a higher one.
 *
 * Run directly (`node test/support/import-graph.ts`) it prints a summary;
 * test/architecture.test.ts holds src/ to it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * The layers, lowest first. A file may import values from files of its own layer
 * and of lower ones only; from a higher layer it may import types alone (an
 * interface passed down). Files at the top of src/ (errors.ts, backoff.ts,
 * certificates.ts, cidr.ts, …) are a shared kernel below everything; cli.ts and
 * index.ts sit above everything.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['kernel'],
  ['state'],
  ['balancer'],
  // Like balancer's, middleware's registry and option schemas are built into the config schema.
  ['middleware'],
  ['config'],
  ['observe'],
  ['upstream'],
  ['guard'],
  ['proxy'],
  ['discovery'],
  ['fleet'],
  ['admin'],
  ['runtime'],
  ['backend'],
  ['entry'],
];

const ENTRY_FILES = new Set(['cli.ts', 'index.ts']);

/** The folder a src/-relative file belongs to, as LAYERS names it. */
export function folderOf(file: string): string {
  const parts = file.split('/');
  if (parts.length === 1) return ENTRY_FILES.has(file) ? 'entry' : 'kernel';
  return parts[0] as string;
}

export function layerOf(folder: string): number {
  const at = LAYERS.findIndex((layer) => layer.includes(folder));
  if (at < 0) throw new Error(`folder src/${folder} has no place in LAYERS (test/support/import-graph.ts): add it`);
  return at;
}

/** One import: the file it names, and whether only types cross (erased when compiled). */
export interface Import {
  to: string;
  typeOnly: boolean;
}

const IMPORT = /(?:^|\n)\s*(import|export)\s+(type\s+)?([^'";]*?)\s*from\s+['"](\.{1,2}\/[^'"]+)['"]|(?:^|\n)\s*import\s+['"](\.{1,2}\/[^'"]+)['"]/g;
const DYNAMIC = /import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** Whether `{ type A, type B }` names types only. */
function allTypes(clause: string): boolean {
  const inner = /^\{([\s\S]*)\}$/.exec(clause.trim());
  if (!inner) return false;
  const names = (inner[1] as string)
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  return names.length > 0 && names.every((n) => n.startsWith('type '));
}

/** src/-relative file → what it imports from other src/ files. */
export function importGraph(srcDir: string): Map<string, Import[]> {
  const graph = new Map<string, Import[]>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        const text = readFileSync(full, 'utf8');
        const found = new Map<string, boolean>();
        const add = (spec: string, typeOnly: boolean) => {
          const to = relative(srcDir, resolve(dirname(full), spec));
          found.set(to, (found.get(to) ?? true) && typeOnly);
        };
        for (const m of text.matchAll(IMPORT)) {
          if (m[5]) add(m[5], false);
          else add(m[4] as string, m[2] !== undefined || allTypes(m[3] as string));
        }
        for (const m of text.matchAll(DYNAMIC)) add(m[1] as string, false);
        graph.set(
          relative(srcDir, full),
          [...found].map(([to, typeOnly]) => ({ to, typeOnly })).sort((a, b) => a.to.localeCompare(b.to)),
        );
      }
    }
  };
  walk(srcDir);
  return graph;
}

/** Strongly connected components with more than one file (or a file importing itself): the import circles. */
export function circles(graph: Map<string, Import[]>): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    indices.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const { to: w } of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!indices.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, indices.get(w) as number));
    }
    if (low.get(v) === indices.get(v)) {
      const component: string[] = [];
      for (;;) {
        const w = stack.pop() as string;
        onStack.delete(w);
        component.push(w);
        if (w === v) break;
      }
      if (component.length > 1 || graph.get(v)?.some((i) => i.to === v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!indices.has(v)) visit(v);
  return found;
}

/**
 * Imports from a file to a file of a higher layer. Type-only ones are interfaces
 * passed down (a lower folder declares what it needs of a higher one's objects by
 * naming their type): allowed, and listed apart.
 */
export function upwardImports(graph: Map<string, Import[]>): { from: string; to: string; typeOnly: boolean }[] {
  const out: { from: string; to: string; typeOnly: boolean }[] = [];
  for (const [from, imports] of graph) {
    const own = layerOf(folderOf(from));
    for (const { to, typeOnly } of imports) if (layerOf(folderOf(to)) > own) out.push({ from, to, typeOnly });
  }
  return out;
}

/** Folder → folders it imports (for the picture in the docs). */
export function folderGraph(graph: Map<string, Import[]>, valuesOnly = false): Map<string, Set<string>> {
  const folders = new Map<string, Set<string>>();
  for (const [from, imports] of graph) {
    const f = folderOf(from);
    const set = folders.get(f) ?? new Set<string>();
    for (const { to, typeOnly } of imports) if (folderOf(to) !== f && !(valuesOnly && typeOnly)) set.add(folderOf(to));
    folders.set(f, set);
  }
  return folders;
}

if (import.meta.main) {
  const graph = importGraph(resolve(process.argv[2] ?? resolve(import.meta.dirname, '../../src')));
  const edges = [...graph.values()].reduce((n, t) => n + t.length, 0);
  const found = circles(graph);
  console.log(`files: ${graph.size}, imports: ${edges}`);
  console.log(`import circles: ${found.length}`);
  for (const c of found) console.log(`  ${c.join(' ↔ ')}`);
  let upward: { from: string; to: string; typeOnly: boolean }[] = [];
  try {
    upward = upwardImports(graph);
  } catch (err) {
    console.log((err as Error).message);
  }
  const values = upward.filter((u) => !u.typeOnly);
  console.log(`upward imports (layer order ${LAYERS.map((l) => l.join('|')).join(' < ')}): ${upward.length}, of which ${values.length} of values`);
  for (const u of upward) console.log(`  ${u.from} → ${u.to}${u.typeOnly ? ' (types only)' : ''}`);
  console.log('each folder and the folders whose values it imports:');
  for (const [f, set] of [...folderGraph(graph, true)].sort((a, b) => layerOf(a[0]) - layerOf(b[0])))
    console.log(`  ${f} → ${[...set].sort((a, b) => layerOf(a) - layerOf(b)).join(', ')}`);
}
