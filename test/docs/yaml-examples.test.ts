/**
 * Every ```yaml block of README.md and docs/**\/*.md goes through the real config
 * loader (the one `velocity validate` and `start` use), so a documented example can
 * never be rejected. A block that is deliberately a fragment or deliberately wrong
 * says so with a marker on the line before its fence (test/support/markdown.ts);
 * a block marked invalid must really be refused.
 */
import assert from 'node:assert/strict';
import { relative } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError, formatProblem } from '../../src/errors.ts';
import { markdownFiles, ROOT, yamlBlocks } from '../support/markdown.ts';

/**
 * What the loader refuses in a config, leaving out only files the example names on the operator's
 * machine (certificates, CA bundles): everything else about the block must be right.
 */
function refusal(text: string, where: string): string[] {
  try {
    parseConfig(text, where);
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems.filter((p) => !/^cannot read [\w ]*file \/\S+: no such file/.test(p.message)).map(formatProblem);
  }
}

const all = markdownFiles().flatMap((file) => yamlBlocks(file).map((block) => ({ where: `${relative(ROOT, file)}:${block.line}`, ...block })));

test('the README and docs hold YAML examples (the extraction finds them)', () => {
  assert.ok(all.length >= 15, `found ${all.length} YAML blocks`);
});

test('markers stay rare: most examples are whole configs', () => {
  const marked = all.filter((b) => b.kind !== 'config');
  assert.ok(marked.length <= Math.max(2, all.length / 5), `${marked.length} of ${all.length} blocks are marked: ${marked.map((b) => b.where).join(', ')}`);
});

for (const block of all) {
  test(`${block.where} (${block.kind})`, () => {
    if (block.kind === 'partial') {
      assert.doesNotThrow(() => parse(block.text), 'a fragment is still YAML');
      return;
    }
    // An example's ${SECRET} stands for the operator's environment: give every one without a default a value.
    const unset = [...block.text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1] as string).filter((name) => process.env[name] === undefined);
    for (const name of unset) process.env[name] = 'an-example-value-of-32-characters';
    try {
      if (block.kind === 'invalid') {
        assert.throws(() => parseConfig(block.text, block.where), ConfigError, 'a block marked invalid is refused by the loader');
        return;
      }
      const problems = refusal(block.text, block.where);
      assert.deepEqual(problems, [], `${block.where}: a documented example is refused:\n${problems.join('\n')}`);
    } finally {
      for (const name of unset) delete process.env[name];
    }
  });
}
