/** Velocity embedded twice in one process: each instance keeps its own folder for custom policy modules, across reloads. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startBackend } from '../../src/backend/demo-backend.ts';
import { parseConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/observe/logger.ts';
import { start, type Velocity } from '../../src/runtime/instance.ts';
import { get, testAgent } from '../support/velocity.ts';

/** A policy module that always picks the usable server named `id`. */
const policyPicking = (id: string) => `export default () => ({ pick(servers, _request, usable) { return servers.find((s) => s.id === ${JSON.stringify(id)} && usable(s)); } });\n`;

test('two instances in one process resolve ./policy.mjs from their own config folders, also after a reload', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'velocity-embedded-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const backends = await Promise.all(['one', 'two'].map((name) => startBackend({ port: 0, name })));
  t.after(() => Promise.all(backends.map((b) => b.close())));
  const yaml = (mark: number) => `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    policy: { module: ./policy.mjs, options: { mark: ${mark} } }
    servers:
      - { url: "http://127.0.0.1:${backends[0]?.port}", name: one }
      - { url: "http://127.0.0.1:${backends[1]?.port}", name: two }
`;
  const instances: Velocity[] = [];
  for (const name of ['one', 'two']) {
    const dir = join(root, name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'policy.mjs'), policyPicking(name));
    writeFileSync(join(dir, 'velocity.yaml'), yaml(1));
    const velocity = await start(join(dir, 'velocity.yaml'), { logger: silentLogger(), watchConfig: false });
    t.after(() => velocity.close());
    instances.push(velocity);
  }
  const agent = testAgent(t);
  const servedBy = async (i: number) => (await get(agent, `http://127.0.0.1:${instances[i]?.address.port}/`)).headers['x-backend'];
  assert.equal(await servedBy(0), 'one');
  assert.equal(await servedBy(1), 'two');
  // A changed policy is loaded again: the first instance still looks in its own folder.
  const result = await instances[0]?.reload(parseConfig(yaml(2), join(root, 'one', 'velocity.yaml')).config);
  assert.equal(result?.ok, true);
  assert.equal(await servedBy(0), 'one');
  assert.equal(await servedBy(1), 'two');
});
