/** Every YAML example in docs/routes-and-middleware.md is a config Velocity accepts: schema, load-time middleware checks, no shadow warnings. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../src/config/load.ts';
import { middlewareProblems } from '../../src/middleware/check.ts';

const DOC = fileURLToPath(new URL('../../docs/routes-and-middleware.md', import.meta.url));
const README = fileURLToPath(new URL('../../README.md', import.meta.url));

test('every YAML block of docs/routes-and-middleware.md and the README section validates', async () => {
  const readme = readFileSync(README, 'utf8');
  const section = readme.slice(readme.indexOf('## Routes and middleware'), readme.indexOf('\n## ', readme.indexOf('## Routes and middleware') + 5));
  const text = `${readFileSync(DOC, 'utf8')}\n${section}`;
  const blocks = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] as string);
  assert.ok(blocks.length >= 16, `only ${blocks.length} examples`);
  for (const [i, yaml] of blocks.entries()) {
    const line = text.slice(0, text.indexOf(yaml)).split('\n').length;
    const loaded = (() => {
      try {
        return parseConfig(yaml, `${DOC}:${line}`, {});
      } catch (err) {
        throw new Error(`example ${i + 1} (line ${line}): ${(err as Error).message}`);
      }
    })();
    assert.deepEqual(loaded.warnings, [], `example ${i + 1} (line ${line})`);
    assert.deepEqual(await middlewareProblems(loaded.config.services, dirname(DOC)), [], `example ${i + 1} (line ${line})`);
  }
});
