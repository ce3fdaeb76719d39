/**
 * No section of the config is skipped by a reload: every top-level key of the schema
 * is either applied live (the reload names nothing for it and the running config
 * holds the new value) or named in `restart_required`. The reload driver reports a
 * changed section that no subsystem takes care of as waiting for a restart, so a key
 * added to the schema without a place in the driver fails here as "restart" while
 * this table says "live" — or fails the first test, for having no line in this table.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { startBackend } from '../../src/backend/demo-backend.ts';
import { parseConfig } from '../../src/config/load.ts';
import { configSchema } from '../../src/config/schema/root.ts';
import { freePort } from '../support/spawn.ts';
import { startInProcess } from '../support/velocity.ts';

type Outcome = 'live' | 'restart';

/** For each top-level key: a changed value (YAML) and what a reload must do with it. */
const CHANGES = (ports: { listen: number; listener: number }): Record<string, { yaml: string; outcome: Outcome }> => ({
  listen: { yaml: `["127.0.0.1:0", "127.0.0.1:${ports.listen}"]`, outcome: 'live' },
  listeners: { yaml: `[{ type: http, listen: "127.0.0.1:${ports.listener}" }]`, outcome: 'live' },
  workers: { yaml: '2', outcome: 'restart' },
  shutdown_timeout: { yaml: '12s', outcome: 'live' },
  client: { yaml: '{ header_timeout: 7s }', outcome: 'restart' },
  admin: { yaml: '{ listen: "127.0.0.1:0", token: "a-reload-token-0123456789" }', outcome: 'live' },
  probes: { yaml: '{ ready_when: listening, listener_paths: { live: /livez } }', outcome: 'live' },
  docker: { yaml: '{ host: "unix:///nonexistent/velocity-reload-test.sock" }', outcome: 'live' },
  access_log: { yaml: '{ output: off }', outcome: 'live' },
  logs: { yaml: '{ store: memory }', outcome: 'live' },
  metrics: { yaml: '{ enabled: false }', outcome: 'live' },
  tracing: { yaml: '{ propagate: false }', outcome: 'live' },
  trusted_proxies: { yaml: '[10.0.0.0/8]', outcome: 'live' },
  ip_filter: { yaml: '{ deny: [203.0.113.0/24] }', outcome: 'live' },
  rate_limits: { yaml: '[{ rate: 100/s }]', outcome: 'live' },
  state: { yaml: '{ local_table_size: 2048 }', outcome: 'restart' },
  defaults: { yaml: '{ retries: { attempts: 2 } }', outcome: 'live' },
  services: { yaml: '', outcome: 'live' },
  config_source: { yaml: '{ etcd: { endpoints: ["127.0.0.1:1"] } }', outcome: 'restart' },
});

const schemaKeys = () => Object.keys(configSchema.in.shape).sort();

describe('reload covers every section of the config', () => {
  test('every top-level key of the schema has a line in this table', () => {
    assert.deepEqual(Object.keys(CHANGES({ listen: 1, listener: 2 })).sort(), schemaKeys());
  });

  test('changing any one section is applied live or named in restart_required, and changing it back is too', async (t) => {
    const backend = await startBackend({ port: 0, name: 'b1' });
    t.after(() => backend.close());
    const base: Record<string, string> = {
      listen: '"127.0.0.1:0"',
      admin: '{ listen: "127.0.0.1:0" }',
      access_log: '{ output: off }',
      services: `\n  - name: app\n    servers: [http://127.0.0.1:${backend.port}]`,
    };
    const yamlOf = (sections: Record<string, string>) =>
      `${Object.entries(sections)
        .map(([key, value]) => `${key}: ${value}`)
        .join('\n')}\n`;
    const configOf = (sections: Record<string, string>) => parseConfig(yamlOf(sections), 'reload.yaml').config;
    const velocity = await startInProcess(t, yamlOf(base));
    const changes = CHANGES({ listen: await freePort(), listener: await freePort() });
    // The access log is off in the base (no output while testing): its change turns it on.
    changes.access_log = { yaml: '{ output: stdout, format: common, sample: 0 }', outcome: 'live' };
    changes.services = { yaml: `${base.services}\n  - name: other\n    hosts: [other.example]\n    servers: [http://127.0.0.1:${backend.port}]`, outcome: 'live' };

    for (const [key, change] of Object.entries(changes)) {
      const changed = configOf({ ...base, [key]: change.yaml });
      const result = await velocity.reload(changed);
      assert.equal(result.ok, true, `${key}: ${result.errors?.join('; ')}`);
      const named = (result.restart_required ?? []).filter((f) => f === key || f.startsWith(`${key}.`) || f.startsWith(`${key}[`));
      if (change.outcome === 'restart') {
        assert.ok(named.length > 0, `${key}: a change waits for a restart and must be named (got ${JSON.stringify(result.restart_required)})`);
      } else {
        assert.equal(result.restart_required, undefined, `${key}: applied live, nothing waits for a restart`);
        assert.deepEqual(velocity.config[key as keyof typeof velocity.config], changed[key as keyof typeof changed], `${key}: the running config holds it`);
      }
      const back = await velocity.reload(configOf(base));
      assert.equal(back.ok, true, `${key} back: ${back.errors?.join('; ')}`);
      if (change.outcome === 'live') assert.equal(back.restart_required, undefined, `${key} back: applied live`);
    }
  });
});
