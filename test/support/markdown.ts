/** The Markdown the project ships (README.md and every docs/**\/*.md) and the YAML blocks in it. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** README.md and every Markdown file under docs/, wherever the pages end up. */
export function markdownFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => join(ROOT, 'docs', f));
  return [join(ROOT, 'README.md'), ...docs];
}

/**
 * How a YAML block is meant: a whole config (the default), or — marked by an HTML
 * comment on the line before its fence — `<!-- config: partial -->` (a fragment, not
 * a whole file) or `<!-- config: invalid -->` (a deliberate mistake the loader must refuse).
 */
export type YamlBlockKind = 'config' | 'partial' | 'invalid';

export interface YamlBlock {
  /** 1-based line of the block's first YAML line. */
  line: number;
  text: string;
  kind: YamlBlockKind;
}

const MARKER = /^<!--\s*config:\s*(partial|invalid)\s*-->$/;

/** Every ```yaml block of a Markdown file, with the line it starts on and its marker. */
export function yamlBlocks(file: string): YamlBlock[] {
  const blocks: YamlBlock[] = [];
  let current: { line: number; lines: string[]; kind: YamlBlockKind } | undefined;
  let previous = '';
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      const fence = line.trim();
      if (!current && /^```ya?ml\b/.test(fence)) {
        const marked = MARKER.exec(previous);
        current = { line: i + 2, lines: [], kind: (marked?.[1] as YamlBlockKind | undefined) ?? 'config' };
      } else if (current && fence.startsWith('```')) {
        blocks.push({ line: current.line, text: current.lines.join('\n'), kind: current.kind });
        current = undefined;
      } else current?.lines.push(line);
      if (fence !== '') previous = fence;
    });
  return blocks;
}
