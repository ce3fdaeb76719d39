import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError, type ConfigProblem } from '../../src/errors.ts';

function problems(yaml: string, env: NodeJS.ProcessEnv = {}): ConfigProblem[] {
  try {
    parseConfig(yaml, 'velocity.yaml', env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return [...err.problems];
  }
  assert.fail('config was accepted');
}

const minimal = `services:
  - name: shop
    servers: [http://127.0.0.1:9001]
`;

describe('config loading', () => {
  test('a minimal config gets documented defaults and is frozen', () => {
    const { config } = parseConfig(minimal);
    assert.deepEqual(config.listen, [{ host: '0.0.0.0', port: 8000 }]);
    assert.equal(config.services[0]?.policy.name, 'round-robin');
    assert.deepEqual(config.services[0]?.hosts, ['*']);
    assert.deepEqual(config.services[0]?.paths, ['/']);
    assert.equal(config.services[0]?.servers[0]?.weight, 1);
    assert.equal(config.services[0]?.health.type, 'none');
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.services[0]));
  });

  test('the issue example parses with durations in milliseconds and status ranges', () => {
    const { config } = parseConfig(`listen: "0.0.0.0:8000"
services:
  - name: shop
    hosts: ["shop.localhost", "*.shop.example"]
    paths: ["/"]
    policy: weighted-round-robin
    servers:
      - url: http://127.0.0.1:9001
        weight: 3
      - url: http://10.0.0.7:8080
    health:
      type: http
      path: /health
      expect_status: "200-399"
      interval: 2s
      timeout: 1s
      healthy_threshold: 2
      unhealthy_threshold: 3
`);
    const shop = config.services[0];
    assert.equal(shop?.health.interval, 2000);
    assert.equal(shop?.health.timeout, 1000);
    assert.deepEqual(shop?.health.expect_status, { min: 200, max: 399 });
    assert.equal(shop?.servers[0]?.weight, 3);
    assert.equal(shop?.servers[1]?.url, 'http://10.0.0.7:8080');
  });

  test('text that is not YAML is reported with line and column', () => {
    const [p] = problems('services:\n  - name: [unclosed\n');
    assert.equal(p?.file, 'velocity.yaml');
    assert.equal(p?.line, 3);
    assert.match(p?.message ?? '', /not valid YAML/);
  });

  test('a wrong type names the field, position and what was expected', () => {
    const [p] = problems(`services:
  - name: shop
    servers:
      - url: http://127.0.0.1:9001
        weight: heavy
`);
    assert.equal(p?.path, 'services[0].servers[0].weight');
    assert.equal(p?.line, 5);
    assert.equal(p?.column, 17);
    assert.match(p?.message ?? '', /whole number/);
  });

  test('an unknown key is an error with a did-you-mean hint pointing at the key', () => {
    const [p] = problems(`services:
  - name: shop
    polcy: round-robin
    servers: [http://127.0.0.1:9001]
`);
    assert.equal(p?.path, 'services[0].polcy');
    assert.equal(p?.line, 3);
    assert.equal(p?.column, 5);
    assert.match(p?.message ?? '', /unknown field "polcy" \(did you mean "policy"\?\)/);
  });

  test('a duplicate service name points at the second one', () => {
    const [p] = problems(`services:
  - name: shop
    servers: [http://127.0.0.1:9001]
  - name: shop
    servers: [http://127.0.0.1:9002]
`);
    assert.equal(p?.path, 'services[1].name');
    assert.equal(p?.line, 4);
    assert.equal(p?.column, 11);
    assert.match(p?.message ?? '', /duplicate service name "shop"/);
  });

  test('a bad URL is reported at the server entry', () => {
    const [p] = problems(`services:
  - name: shop
    servers:
      - url: "not a url"
`);
    assert.equal(p?.path, 'services[0].servers[0].url');
    assert.equal(p?.line, 4);
    assert.match(p?.message ?? '', /not a URL/);
  });

  test('a weight of zero or less is rejected', () => {
    for (const weight of ['0', '-2']) {
      const [p] = problems(`services:\n  - name: shop\n    servers:\n      - url: http://127.0.0.1:9001\n        weight: ${weight}\n`);
      assert.equal(p?.path, 'services[0].servers[0].weight');
      assert.equal(p?.line, 5);
      assert.match(p?.message ?? '', /greater than 0/);
    }
  });

  test('an unknown policy lists the known ones and suggests the closest', () => {
    const [p] = problems(`services:
  - name: shop
    policy: least-connection
    servers: [http://127.0.0.1:9001]
`);
    assert.equal(p?.path, 'services[0].policy');
    assert.equal(p?.line, 3);
    assert.equal(p?.column, 13);
    assert.match(p?.message ?? '', /unknown policy "least-connection"; expected one of .*round-robin.* \(did you mean "least-connections"\?\)/);
  });

  test('a bad duration says what a duration looks like', () => {
    const [p] = problems(`services:
  - name: shop
    servers: [http://127.0.0.1:9001]
    health: { type: http, interval: 2 seconds }
`);
    assert.equal(p?.path, 'services[0].health.interval');
    assert.equal(p?.line, 4);
    assert.match(p?.message ?? '', /not a duration/);
  });

  test('every problem is reported, not only the first', () => {
    const found = problems(`listen: "nowhere"
services:
  - name: shop
    policy: bogus
    servers: [ftp://x]
`);
    assert.deepEqual(
      found.map((p) => p.path),
      ['listen', 'services[0].policy', 'services[0].servers[0]'],
    );
  });

  test('a missing required field is reported at its parent', () => {
    const [p] = problems(`services:
  - servers: [http://127.0.0.1:9001]
`);
    assert.equal(p?.path, 'services[0].name');
    assert.equal(p?.line, 2);
    assert.match(p?.message ?? '', /required field is missing/);
  });

  // biome-ignore lint/suspicious/noTemplateCurlyInString: the name quotes the config's ${ENV} syntax, not a template
  test('${ENV} values are substituted, with defaults, and a missing one is an error at its position', () => {
    const { config } = parseConfig(
      `listen: "127.0.0.1:\${PORT}"
services:
  - name: shop
    servers: ["http://\${BACKEND_HOST:-127.0.0.1}:9001"]
`,
      'velocity.yaml',
      { PORT: '8123' },
    );
    assert.deepEqual(config.listen, [{ host: '127.0.0.1', port: 8123 }]);
    assert.equal(config.services[0]?.servers[0]?.url, 'http://127.0.0.1:9001');
    const [p] = problems(`admin:\n  token: \${ADMIN_TOKEN}\nservices:\n  - name: shop\n`, {});
    assert.equal(p?.line, 2);
    assert.match(p?.message ?? '', /ADMIN_TOKEN is not set/);
  });

  test('defaults apply to every service that does not set its own value', () => {
    const { config } = parseConfig(`defaults:
  timeouts: { connect: 750ms }
  health: { type: tcp }
services:
  - name: a
    servers: [http://127.0.0.1:9001]
  - name: b
    timeouts: { connect: 2s }
    servers: [http://127.0.0.1:9002]
`);
    assert.equal(config.services[0]?.timeouts.connect, 750);
    assert.equal(config.services[1]?.timeouts.connect, 2000);
    assert.equal(config.services[1]?.health.type, 'tcp');
  });

  test('a mistake inside defaults points at the defaults block', () => {
    const [p] = problems(`defaults:
  timeouts: { conect: 1s }
services:
  - name: a
`);
    assert.equal(p?.path, 'defaults.timeouts.conect');
    assert.equal(p?.line, 2);
    assert.match(p?.message ?? '', /did you mean "connect"/);
  });
});

describe('the original Go Velocity config', () => {
  const legacy = `api_port: 8080
listen_port: 8000
services:
  - name: shop
    domain: "shop:8000"
    targetURLs:
      - http://127.0.0.1:9001
      - http://127.0.0.1:9002
    algorythm: LeastConnections
  - name: blog
    domain: "blog:8000"
    targetURLs: [http://127.0.0.1:9003]
    algorythm: RoundRobin
`;

  test('loads unchanged and is translated to the current format', () => {
    const { config, legacyTranslation } = parseConfig(legacy);
    assert.deepEqual(config.listen, [{ host: '0.0.0.0', port: 8000 }]);
    assert.deepEqual(config.admin.listen, { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(config.services[0]?.hosts, ['shop']);
    assert.equal(config.services[0]?.policy.name, 'least-connections');
    assert.equal(config.services[1]?.policy.name, 'round-robin');
    assert.deepEqual(
      config.services[0]?.servers.map((s) => s.url),
      ['http://127.0.0.1:9001', 'http://127.0.0.1:9002'],
    );
    assert.match(legacyTranslation ?? '', /policy: least-connections/);
    // The printed equivalent is itself a valid current-format config.
    assert.deepEqual(parseConfig(legacyTranslation ?? '').config, config);
  });

  test('errors in an old-format file point at the old field names', () => {
    const [p] = problems(`listen_port: 8000
services:
  - name: shop
    domain: "shop:8000"
    targetURLs: ["not a url"]
    algorythm: Random
`);
    assert.ok(p);
    const byPath = problems(`listen_port: 8000\nservices:\n  - name: shop\n    targetURLs: [http://127.0.0.1:9001]\n    algorythm: Random\n`);
    assert.equal(byPath[0]?.line, 5);
    assert.match(byPath[0]?.message ?? '', /unknown policy "Random"/);
  });
});
