/**
 * Property-based fuzzing (fast-check): the config loader, the router, the unit
 * parsers, and the HTTP edge of the real binary driven with random bytes.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { Router } from '../../src/proxy/router.ts';
import { parseDuration, parseRate, parseSize, parseStatusRange } from '../../src/units.ts';
import { get, load, startBackendProcess, startVelocityProcess, testAgent } from '../support/velocity.ts';

const VALID = `listen: "127.0.0.1:0"
client: { header_timeout: 5s, max_header_size: 16kb }
admin: { enabled: false }
services:
  - name: app
    hosts: [app.example, "*.example.org"]
    paths: [/api, /]
    policy: { name: weighted-round-robin }
    health: { type: http, path: /health, interval: 2s }
    retries: { attempts: 3, per_try_timeout: 1s, retry_on: [502, 503] }
    rate_limits:
      - { rate: 100/s, burst: 20, key: [client_ip] }
    servers:
      - http://127.0.0.1:3001
      - { url: "http://127.0.0.1:3002", weight: 2 }
`;

function assertConfigErrorOnly(text: string): void {
  try {
    parseConfig(text, 'fuzz.yaml', {});
  } catch (err) {
    if (!(err instanceof ConfigError)) throw new Error(`threw ${String(err)} for ${JSON.stringify(text)}`);
    for (const p of err.problems) {
      if (!(p.line >= 1 && p.column >= 1)) throw new Error(`problem without a position ${JSON.stringify(p)} for ${JSON.stringify(text)}`);
    }
  }
}

const yamlish = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        'services:',
        '  - name: a',
        '    servers: [',
        ']',
        '{',
        '}',
        '- ',
        ': ',
        '"',
        "'",
        '&a',
        '*a',
        '!!str',
        '$' + '{X}',
        '\t',
        '#',
        '---',
        '|',
        '>',
        'listen:',
        'policy:',
        '\n',
      ),
      fc.string({ maxLength: 12 }),
    ),
    { maxLength: 40 },
  )
  .map((parts) => parts.join(''));

test('the config loader throws nothing but a ConfigError with line ≥ 1 and column ≥ 1 for random YAML-ish text', () => {
  fc.assert(fc.property(yamlish, assertConfigErrorOnly), { numRuns: 1500 });
});

test('the config loader throws nothing but a positioned ConfigError for random mutations of a valid config', () => {
  assert.doesNotThrow(() => parseConfig(VALID, 'fuzz.yaml', {}));
  const mutation = fc.tuple(
    fc.nat(VALID.length),
    fc.nat(20),
    fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('', ':', '-', ' ', '\n', '[', '{', '"', '0', '-1', 'true', 'null', '1e999', '99999999999999999999')),
  );
  fc.assert(
    fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (edits) => {
      let text = VALID;
      for (const [at, cut, insert] of edits) text = text.slice(0, at % (text.length + 1)) + insert + text.slice((at % (text.length + 1)) + cut);
      assertConfigErrorOnly(text);
    }),
    { numRuns: 1500 },
  );
});

const segment = fc.stringMatching(/^[a-z0-9]{1,4}$/);
const prefixArb = fc.array(segment, { minLength: 0, maxLength: 3 }).map((s) => `/${s.join('/')}`);

test('the router never throws and picks the longest matching path prefix on segment boundaries', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(prefixArb, { minLength: 1, maxLength: 6 }),
      fc.array(segment, { maxLength: 5 }),
      fc.string(),
      fc.option(fc.string()),
      (prefixes, pathSegs, junkPath, host) => {
        const router = new Router(prefixes.map((p) => ({ hosts: ['*'], paths: [p], target: p })));
        assert.doesNotThrow(() => router.match(host ?? undefined, junkPath));
        const path = `/${pathSegs.join('/')}`;
        const got = router.match(host ?? undefined, path);
        const matches = prefixes.filter((p) => p === '/' || path === p || path.startsWith(`${p}/`));
        const longest = matches.sort((a, b) => b.length - a.length)[0];
        assert.equal(got, longest);
      },
    ),
    { numRuns: 2000 },
  );
});

test('exact host routes beat wildcards, which beat the default, whatever the case or port in Host', () => {
  fc.assert(
    fc.property(fc.stringMatching(/^[a-z]{1,8}$/), fc.boolean(), fc.option(fc.integer({ min: 1, max: 65535 })), (label, upper, port) => {
      const router = new Router([
        { hosts: ['*'], paths: ['/'], target: 'default' },
        { hosts: ['*.example.com'], paths: ['/'], target: 'wild' },
        { hosts: ['exact.example.com'], paths: ['/'], target: 'exact' },
      ]);
      const suffix = port === null ? '' : `:${port}`;
      const name = (s: string) => (upper ? s.toUpperCase() : s) + suffix;
      assert.equal(router.match(name('exact.example.com'), '/x'), 'exact');
      assert.equal(router.match(name(`${label}x.example.com`), '/x'), label === 'exact' ? 'wild' : 'wild');
      assert.equal(router.match(name(`${label}.other`), '/x'), 'default');
    }),
    { numRuns: 500 },
  );
});

test('unit parsers never throw and round-trip what they print', () => {
  fc.assert(
    fc.property(fc.string(), (s) => {
      parseDuration(s);
      parseSize(s);
      parseRate(s);
      parseStatusRange(s);
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 10_000_000 }), fc.constantFrom(['ms', 1], ['s', 1000], ['m', 60_000], ['h', 3_600_000]), (n, [unit, ms]) => {
      assert.equal(parseDuration(`${n}${unit}`), n * (ms as number));
    }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 1_000_000 }), fc.constantFrom(['b', 1], ['kb', 1024], ['mb', 1024 ** 2], ['GB', 1024 ** 3]), (n, [unit, mult]) => {
      assert.equal(parseSize(`${n}${unit}`), n * (mult as number));
    }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 1, max: 60 }), fc.constantFrom(['s', 1000], ['m', 60_000], ['h', 3_600_000]), (count, k, [unit, ms]) => {
      assert.deepEqual(parseRate(`${count}/${k}${unit}`), { count, periodMs: k * (ms as number) });
    }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 100, max: 599 }), fc.integer({ min: 100, max: 599 }), (a, b) => {
      const [min, max] = a <= b ? [a, b] : [b, a];
      assert.deepEqual(parseStatusRange(`${min}-${max}`), { min, max });
      assert.equal(parseStatusRange(`${max}-${min}`) === undefined, min !== max);
    }),
  );
});

/** Writes bytes on a fresh connection, reads until close or 300 ms of quiet. */
function blast(port: number, bytes: Uint8Array[]): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let quiet: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(quiet);
      socket.destroy();
      resolve();
    };
    socket.on('error', done);
    socket.on('close', done);
    socket.on('data', () => undefined);
    socket.on('connect', () => {
      for (const b of bytes) socket.write(b);
      quiet = setTimeout(done, 300);
    });
  });
}

test('the HTTP edge of the real binary survives random byte streams on many connections and still answers afterwards', async (t) => {
  const backend = await startBackendProcess(t, 'fuzz');
  const velocity = await startVelocityProcess(
    t,
    `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nclient: { header_timeout: 2s }\nservices:\n  - name: app\n    servers: [${backend.url}]\n`,
  );
  // Random bytes, and random bytes grafted onto plausible request heads, so the parser gets past the first line.
  const heads = fc.constantFrom(
    'GET / HTTP/1.1\r\nHost: a\r\n',
    'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n',
    'GET /',
    'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    '',
  );
  const stream = fc.tuple(heads, fc.array(fc.uint8Array({ maxLength: 512 }), { maxLength: 4 })).map(([head, rest]) => [new TextEncoder().encode(head), ...rest]);
  const inputs = fc.sample(stream, { numRuns: 400, seed: 12_345 });
  await load(inputs.length, 20, (i) => blast(velocity.port, inputs[i] as Uint8Array[]));
  assert.equal(velocity.child.exitCode, null, 'Velocity is still running');
  const agent = testAgent(t);
  const after = await get(agent, `${velocity.url}/`);
  assert.equal(after.status, 200);
  assert.doesNotMatch(velocity.logs.output(), /unexpected error|uncaught/i);
});
