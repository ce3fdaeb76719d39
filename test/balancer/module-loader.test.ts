/**
 * Custom policy modules: a TypeScript or JavaScript module that implements the
 * policy interface loads; one that cannot load or does not implement it is refused
 * with a reason; and one that misbehaves at run time costs balance, not requests.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { localPolicyState } from '../../src/balancer/local-state.ts';
import { customPolicy, loadPolicyModule } from '../../src/balancer/module-loader.ts';
import type { BalancedServer, PickRequest } from '../../src/balancer/policy.ts';

const examples = fileURLToPath(new URL('../../examples/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'velocity-modules-'));
const write = (name: string, source: string) => {
  writeFileSync(join(dir, name), source);
  return `./${name}`;
};
const request: PickRequest = { clientIp: '127.0.0.1', method: 'GET', url: '/', header: () => undefined, cookie: () => undefined };
const servers: BalancedServer[] = ['a', 'b', 'c'].map((id, slot) => ({ id, slot, weight: 1, inFlight: 0, latency: 0 }));
const context = () => ({ shared: localPolicyState(), random: () => 0.99, now: Date.now });

describe('loading a policy module', () => {
  test('the TypeScript example loads and picks', async () => {
    const factory = await loadPolicyModule('./custom-policy.ts', examples, { canary: 'c', percent: 10 });
    const policy = factory({ canary: 'c', percent: 10 }, context());
    assert.deepEqual(
      Array.from({ length: 4 }, () => policy.pick(servers, request, () => true)?.id),
      ['a', 'b', 'a', 'b'],
    );
  });

  test('a JavaScript module exporting createPolicy loads', async () => {
    const path = write('named.js', 'export function createPolicy() { return { pick: (servers, _r, usable) => servers.find(usable) }; }\n');
    const factory = await loadPolicyModule(path, dir, {});
    assert.equal(factory({}, context()).pick(servers, request, (s) => s.id !== 'a')?.id, 'b');
  });

  for (const [what, file, source, options, expected] of [
    ['a missing file', './missing.ts', undefined, {}, /cannot load policy module .*missing\.ts: /],
    ['a syntax error', 'broken.js', 'export default (() => {\n', {}, /cannot load policy module .*broken\.js: /],
    ['no factory export', 'number.js', 'export default 42;\n', {}, /must export a factory function as default \(or createPolicy\)/],
    ['a factory without pick', 'no-pick.js', 'export default () => ({ choose() {} });\n', {}, /must return an object with a pick\(servers, request, usable\) method/],
    ['a factory that rejects its options', join(examples, 'custom-policy.ts'), undefined, { percent: 500 }, /failed to create a policy: percent must be between 0 and 100/],
    ['a pick that throws on an empty service', 'throws.js', 'export default () => ({ pick: (s) => s[0].id });\n', {}, /pick\(\) threw on a service with no servers/],
    ['a pick that invents a server', 'invents.js', "export default () => ({ pick: () => ({ id: 'x' }) });\n", {}, /pick\(\) must return undefined when no server is usable/],
  ] as const) {
    test(`${what} is refused with the module path and the reason`, async () => {
      const specifier = source === undefined ? file : write(file, source);
      await assert.rejects(loadPolicyModule(specifier, dir, options), expected);
    });
  }
});

describe('a loaded module at run time', () => {
  const misbehaving = {
    'throws.js': "pick(servers) { if (servers.length) throw new Error('boom'); }",
    'foreign.js': "pick(servers) { return servers.length ? { id: 'ghost', slot: 9 } : undefined; }",
    'unusable.js': 'pick(servers) { return servers[0]; }',
    'refuses.js': 'pick() { return undefined; }',
  };
  for (const [file, body] of Object.entries(misbehaving)) {
    test(`${file.replace('.js', '')}: round robin answers instead, and the problem is reported once per 10 s`, async () => {
      const path = write(`run-${file}`, `export default () => ({ ${body} });\n`);
      await loadPolicyModule(path, dir, {});
      const reports: string[] = [];
      const policy = customPolicy(path, dir, {}, context(), (m) => reports.push(m));
      const usable = (s: BalancedServer) => s.id !== 'a';
      // Round robin over b and c (a is not usable).
      assert.deepEqual(
        Array.from({ length: 6 }, () => policy.pick(servers, request, usable)?.id),
        ['b', 'b', 'c', 'b', 'b', 'c'],
      );
      assert.equal(reports.length, 1);
      assert.match(reports[0] ?? '', new RegExp(`policy module .*run-${file.replace('.', '\\.')}: .*round robin answered instead`));
    });
  }

  test('a well-behaved module picks unchanged and reports nothing', async () => {
    const reports: string[] = [];
    const options = { canary: 'c', percent: 0 };
    await loadPolicyModule('./custom-policy.ts', examples, options);
    const policy = customPolicy('./custom-policy.ts', examples, options, context(), (m) => reports.push(m));
    assert.deepEqual(
      Array.from({ length: 4 }, () => policy.pick(servers, request, () => true)?.id),
      ['a', 'b', 'a', 'b'],
    );
    assert.deepEqual(reports, []);
  });

  test('a module not loaded with the config is reported, and round robin serves', () => {
    const reports: string[] = [];
    const policy = customPolicy('./never-loaded.js', dir, {}, context(), (m) => reports.push(m));
    assert.equal(policy.pick(servers, request, () => true)?.id, 'a');
    assert.match(reports[0] ?? '', /cannot create the policy: not loaded with the config/);
  });
});
