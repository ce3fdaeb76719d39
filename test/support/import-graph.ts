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
 * The layers, lowest first. A file may import files of its own layer and of lower
 * ones only. Files at the top of src/ (errors.ts, backoff.ts) are a shared kernel
 * below everything; cli.ts and index.ts sit above everything.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['kernel'],
  ['config'],
  ['state'],
  ['observe'],
  ['balancer'],
  ['upstream'],
  ['guard'],
  ['middleware'],
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

const IMPORT = /(?:^|\n)\s*(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\s+from\s+)?['"](\.{1,2}\/[^'"]+)['"]/g;
const DYNAMIC = /import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** src/-relative file → src/-relative files it imports. */
export function importGraph(srcDir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        const text = readFileSync(full, 'utf8');
        const targets = new Set<string>();
        for (const re of [IMPORT, DYNAMIC]) {
          for (const m of text.matchAll(re)) targets.add(relative(srcDir, resolve(dirname(full), m[1] as string)));
        }
        graph.set(relative(srcDir, full), [...targets].sort());
      }
    }
  };
  walk(srcDir);
  return graph;
}

/** Strongly connected components with more than one file (or a file importing itself): the import circles. */
export function circles(graph: Map<string, string[]>): string[][] {
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
    for (const w of graph.get(v) ?? []) {
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
      if (component.length > 1 || graph.get(v)?.includes(v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!indices.has(v)) visit(v);
  return found;
}

/** Imports from a file to a file of a higher layer. */
export function upwardImports(graph: Map<string, string[]>): { from: string; to: string }[] {
  const out: { from: string; to: string }[] = [];
  for (const [from, targets] of graph) {
    const own = layerOf(folderOf(from));
    for (const to of targets) if (layerOf(folderOf(to)) > own) out.push({ from, to });
  }
  return out;
}

/** Folder → folders it imports (for the picture in the docs). */
export function folderGraph(graph: Map<string, string[]>): Map<string, Set<string>> {
  const folders = new Map<string, Set<string>>();
  for (const [from, targets] of graph) {
    const f = folderOf(from);
    const set = folders.get(f) ?? new Set<string>();
    for (const to of targets) if (folderOf(to) !== f) set.add(folderOf(to));
    folders.set(f, set);
  }
  return folders;
}

if (import.meta.main) {
  const graph = importGraph(resolve(import.meta.dirname, '../../src'));
  const edges = [...graph.values()].reduce((n, t) => n + t.length, 0);
  const found = circles(graph);
  console.log(`files: ${graph.size}, imports: ${edges}`);
  console.log(`import circles: ${found.length}`);
  for (const c of found) console.log(`  ${c.join(' ↔ ')}`);
  let upward: { from: string; to: string }[] = [];
  try {
    upward = upwardImports(graph);
  } catch (err) {
    console.log((err as Error).message);
  }
  console.log(`upward imports (layer order ${LAYERS.map((l) => l.join('|')).join(' < ')}): ${upward.length}`);
  for (const u of upward) console.log(`  ${u.from} → ${u.to}`);
  console.log('folder graph:');
  for (const [f, set] of [...folderGraph(graph)].sort((a, b) => layerOf(a[0]) - layerOf(b[0])))
    console.log(`  ${f} → ${[...set].sort((a, b) => layerOf(a) - layerOf(b)).join(', ')}`);
}
