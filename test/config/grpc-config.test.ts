/** Config for HTTP/2 servers, gRPC and tracing: accepted forms, and errors at their position. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError, type ConfigProblem } from '../../src/errors.ts';

function problems(yaml: string): ConfigProblem[] {
  try {
    parseConfig(yaml, 'velocity.yaml', {});
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return [...err.problems];
  }
  assert.fail('config was accepted');
}

describe('HTTP/2 servers, gRPC and tracing in the config', () => {
  test('h2c:// servers, https with http2, the grpc health check and the tracing block are accepted', () => {
    const { config } = parseConfig(`services:
  - name: a
    servers: [h2c://127.0.0.1:50051, { url: "https://10.0.0.1:443", http2: true }]
    health: { type: grpc, grpc_service: orders.v1.Orders }
    grpc: { retry_on_unavailable: [/orders.v1.Orders/Get, /orders.v1.Catalog/*], default_timeout: 30s }
    http2_sessions: { max_streams: 50 }
tracing: { sample_ratio: 0.5, otlp: { endpoint: "http://127.0.0.1:4318/v1/traces" } }
`);
    const service = config.services[0];
    assert.deepEqual(
      service?.servers.map((s) => [s.url, s.http2]),
      [
        ['h2c://127.0.0.1:50051', false],
        ['https://10.0.0.1', true],
      ],
    );
    assert.equal(service?.grpc.default_timeout, 30_000);
    assert.equal(service?.http2_sessions.max_streams, 50);
    assert.equal(config.tracing.otlp?.queue_size, 4096);
    assert.equal(config.tracing.propagate, true);
  });

  test('mistakes are reported at their position with what was expected', () => {
    const cases: [string, RegExp][] = [
      ['    servers: [h2c://127.0.0.1]\n', /h2c:\/\/HOST:PORT/],
      ['    servers: [{ url: "http://127.0.0.1:1", http2: true }]\n', /http2: true is for https:\/\/ servers; use h2c/],
      ['    servers: [h2c://127.0.0.1:1, http://127.0.0.1:2]\n', /all speak HTTP\/2 .* or all HTTP\/1\.1/],
      ['    servers: [http://127.0.0.1:2]\n    health: { type: grpc }\n', /health type grpc needs HTTP\/2 servers/],
      ['    servers: [h2c://127.0.0.1:1]\n    grpc: { retry_on_unavailable: [Get] }\n', /\/package\.Service\/Method/],
    ];
    for (const [service, message] of cases) {
      const found = problems(`services:\n  - name: a\n${service}`);
      assert.ok(
        found.some((p) => message.test(p.message) && p.line >= 3),
        `${service}: ${found.map((p) => `${p.line}:${p.path}: ${p.message}`).join('; ')}`,
      );
    }
    const tracing = problems(`tracing: { otlp: { endpoint: "collector:4318" } }\nservices: [{ name: a, servers: [http://127.0.0.1:1] }]\n`);
    assert.ok(tracing.some((p) => p.path === 'tracing.otlp.endpoint' && /http:\/\/ or https:\/\//.test(p.message) && p.line === 1));
  });
});
