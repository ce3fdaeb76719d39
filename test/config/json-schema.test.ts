/**
 * The config's JSON Schema (generated from the zod schema) checked with a real JSON Schema
 * validator: every example and every YAML block of the README and docs passes it, the shipped
 * file and `velocity schema` are that schema, and it refuses what `validate` refuses.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { configJsonSchema } from '../../src/config/json-schema.ts';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { VERSION } from '../../src/version.ts';
import { markdownFiles, yamlBlocks } from '../support/markdown.ts';
import { BIN } from '../support/velocity.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const schema = configJsonSchema(VERSION);
const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, allowMatchingProperties: true });
const validate = ajv.compile(schema);

const schemaErrors = () => ajv.errorsText(validate.errors, { separator: '; ' });

describe('the config JSON Schema', () => {
  test('is a valid JSON Schema (2020-12) and names the version', () => {
    assert.equal(ajv.validateSchema(schema), true, ajv.errorsText(ajv.errors));
    assert.match(String(schema.title), new RegExp(VERSION.replaceAll('.', '\\.')));
  });

  test('every example config passes it', () => {
    const examples = readdirSync(join(ROOT, 'examples')).filter((f) => /\.ya?ml$/.test(f));
    assert.ok(examples.length >= 2, 'the examples folder has configs');
    for (const name of examples) {
      const doc = parse(readFileSync(join(ROOT, 'examples', name), 'utf8'));
      assert.ok(validate(doc), `examples/${name}: ${schemaErrors()}`);
    }
  });

  test('every YAML block of the README and docs/ passes it', () => {
    let count = 0;
    for (const file of markdownFiles()) {
      for (const block of yamlBlocks(file)) {
        // Fragments and deliberate mistakes are marked (test/support/markdown.ts); the loader test checks those.
        if (block.kind !== 'config') continue;
        count++;
        assert.ok(validate(parse(block.text)), `${relative(ROOT, file)}:${block.line}: ${schemaErrors()}`);
      }
    }
    assert.ok(count >= 15, `found ${count} YAML blocks`);
  });

  test('`velocity schema` prints it, and the built package ships the same file', () => {
    const printed = spawnSync(process.execPath, [BIN, 'schema'], { encoding: 'utf8' });
    assert.equal(printed.status, 0, printed.stderr);
    assert.deepEqual(JSON.parse(printed.stdout), schema);
    assert.deepEqual(JSON.parse(readFileSync(join(ROOT, 'dist', 'velocity.schema.json'), 'utf8')), schema);
  });

  const base = 'services:\n  - name: shop\n    servers: [http://127.0.0.1:9001]\n';
  const good: Record<string, string> = {
    minimal: base,
    'units, a bare 0 and an env reference': `listen: ":8000"\nshutdown_timeout: 1m\nclient: { max_header_size: 32kb }\n${base}    timeouts: { total: 0, connect: "\${CONNECT:-2s}" }\n    rate_limits: [{ rate: 5/10s }]\n`,
    'every policy form': `${base}    policy: { name: header-hash, header: x-tenant }\n  - name: b\n    paths: [/b/]\n    policy: least-connections\n`,
  };
  const bad: Record<string, string> = {
    'no services': 'listen: ":8000"\n',
    'an unknown top-level field': `listn: ":8000"\n${base}`,
    'an unknown service field': `${base}    servrs: []\n`,
    'a duration without a unit': `${base}    timeouts: { connect: 5 }\n`,
    'a malformed duration': `${base}    timeouts: { connect: 5x }\n`,
    'a malformed size': `client: { max_header_size: lots }\n${base}`,
    'a malformed rate': `rate_limits: [{ rate: fast }]\n${base}`,
    'a malformed listen address': `listen: "localhost"\n${base}`,
    'an unknown policy': `${base}    policy: round-robbin\n`,
    'a weight of 0': 'services:\n  - name: shop\n    servers: [{ url: http://127.0.0.1:9001, weight: 0 }]\n',
    'a health type that does not exist': `${base}    health: { type: ping }\n`,
    'a service name with a space': 'services:\n  - name: my shop\n',
    'a short admin token': `admin: { token: short }\n${base}`,
    'workers as a word': `workers: many\n${base}`,
    'a listener without its type': `listeners: [{ listen: ":8443" }]\n${base}`,
  };

  test('it accepts what `validate` accepts', () => {
    for (const [what, yaml] of Object.entries(good)) {
      assert.doesNotThrow(() => parseConfig(yaml, 'good.yaml', { CONNECT: '3s' }), what);
      assert.ok(validate(parse(yaml)), `${what}: ${schemaErrors()}`);
    }
  });

  test('it refuses what `validate` refuses', () => {
    for (const [what, yaml] of Object.entries(bad)) {
      assert.throws(() => parseConfig(yaml, 'bad.yaml', {}), ConfigError, `validate accepted ${what}`);
      assert.equal(validate(parse(yaml)), false, `the schema accepted ${what}`);
    }
  });
});
