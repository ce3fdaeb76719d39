/**
 * The access log's JSON line writer gives exactly what JSON.stringify gives for every kind of record,
 * its durations rounded to the microsecond first (the access log's documented precision).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RequestRecord } from '../../src/observe/events.ts';
import { LineBytes } from '../../src/observe/line-bytes.ts';
import { appendRecordJson, recordJson } from '../../src/observe/record-json.ts';
import { SAMPLE_RECORD } from '../support/sample-record.ts';

const base = SAMPLE_RECORD;

/** A duration as the access log has it: milliseconds rounded to the microsecond (docs/observability.md). */
const toMicrosecond = (v: number | undefined) => (v === undefined || !Number.isFinite(v) || Math.abs(v) >= 1e12 ? v : Math.sign(v) * (Math.round(Math.abs(v) * 1000) / 1000));

const reference = (r: RequestRecord) =>
  JSON.stringify({
    ...r,
    time: new Date(r.time).toISOString(),
    upstreamFirstByteMs: toMicrosecond(r.upstreamFirstByteMs),
    upstreamMs: toMicrosecond(r.upstreamMs),
    totalMs: toMicrosecond(r.totalMs),
    queueWaitMs: toMicrosecond(r.queueWaitMs),
  });

test('a record reads as JSON.stringify writes it: key order, absent fields, numbers', () => {
  assert.equal(recordJson(base), reference(base));
  const full: RequestRecord = {
    ...base,
    decision: 'rate-limited',
    retryDenied: 'budget',
    errorCode: 'UPSTREAM_TIMEOUT',
    userAgent: 'curl/8.0',
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    grpcMethod: '/pkg.Svc/Call',
    grpcStatus: 14,
  };
  assert.equal(recordJson(full), reference(full));
  const odd = { ...base, service: undefined, server: undefined, upstreamMs: Number.NaN, totalMs: Number.POSITIVE_INFINITY, bytesOut: -0, status: 1e21 };
  assert.equal(recordJson(odd), reference(odd));
  // Parsed back, every field is there with its value.
  assert.deepEqual(JSON.parse(recordJson(full)), JSON.parse(reference(full)));
});

test('durations are milliseconds rounded to the microsecond: at most three decimals, no trailing zeros, null when not finite', () => {
  const cases: [number, string][] = [
    [0.41234567891234, '0.412'],
    [0.5236, '0.524'],
    [12, '12'],
    [1.5, '1.5'],
    [2.05, '2.05'],
    [1234.56789, '1234.568'],
    [0.0004, '0'],
    [0.0006, '0.001'],
    [-0, '0'],
    [-0.0004, '0'],
    [-2.0006, '-2.001'],
    [3_000_000.25, '3000000.25'],
    // Around 2^31 µs, where the int32 printing hands over to the double one.
    [2_147_483.6464, '2147483.646'],
    [2_147_483.6466, '2147483.647'],
    [2_147_483.647, '2147483.647'],
    [2_147_483.6476, '2147483.648'],
    [-2_147_483.6466, '-2147483.647'],
    [-2_147_483.6476, '-2147483.648'],
    [2_147_483.0004, '2147483'],
    [9.9996, '10'],
    [Number.NaN, 'null'],
    [Number.POSITIVE_INFINITY, 'null'],
    [1e300, '1e+300'],
  ];
  for (const [ms, text] of cases) {
    const line = recordJson({ ...base, upstreamFirstByteMs: ms, upstreamMs: ms, totalMs: ms, queueWaitMs: ms });
    for (const key of ['upstreamFirstByteMs', 'upstreamMs', 'totalMs', 'queueWaitMs'])
      assert.ok(line.includes(`"${key}":${text},`) || line.endsWith(`"${key}":${text}}`), `${ms} → ${text} in ${line}`);
  }
});

test('numbers of every kind read as JSON.stringify writes them: integers, durations, tiny, huge, negative, non-finite', () => {
  const numbers = [0, -0, 1, -1, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 53, 1e21, 1e-7, 5e-324, 0.1, 1 / 3, Number.NaN, Number.NEGATIVE_INFINITY];
  // A fixed-seed generator (no Math.random): the same numbers on every run.
  let seed = 17;
  const next = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  for (let i = 0; i < 20_000; i++) numbers.push((next() - 0.5) * 10 ** Math.floor(next() * 40 - 20), Math.floor(next() * 1e12), performance.now() - next() * 1e3);
  for (let i = 0; i < numbers.length; i += 3) {
    const r = { ...base, upstreamFirstByteMs: numbers[i], upstreamMs: numbers[i + 1], totalMs: numbers[i + 2] ?? 0, bytesOut: Math.floor(numbers[i] ?? 0) };
    assert.equal(recordJson(r), reference(r));
  }
});

test('strings a client controls are escaped: quotes, backslashes, control bytes, lone surrogates', () => {
  for (const nasty of ['/"quoted"', '/back\\slash', '/tab\there', '/nl\n{"forged":1}', '/nul\0', '/\x7f\x80ÿ', '/\ud800alone', '/pair\ud83d\ude00', '/ünïcode', '/€uro ✓']) {
    const r = { ...base, path: nasty, userAgent: nasty, host: nasty };
    assert.equal(recordJson(r), reference(r), nasty);
    assert.equal(JSON.parse(recordJson(r)).path, nasty);
  }
});

test('records of the same millisecond and of the next one get their own time', () => {
  const a = recordJson(base);
  const b = recordJson({ ...base, time: base.time + 1 });
  assert.match(a, /"time":"2025-12-01T09:23:20.123Z"/);
  assert.match(b, /"time":"2025-12-01T09:23:20.124Z"/);
});

test('times read as toISOString writes them: across seconds and back, before 1970, fractions, extended years', () => {
  const times = [0, -1, -1000, -1001, 999, 1000, 1001, base.time, base.time + 877, base.time + 1000, base.time - 1, base.time + 1, 1.7, -1.7];
  times.push(253402300799999, 253402300800000, 8.64e15, -8.64e15, -62198755200001);
  for (const time of times) assert.equal(JSON.parse(recordJson({ ...base, time })).time, new Date(time).toISOString(), String(time));
});

test('a record longer than the buffer it is written into comes out whole', () => {
  const long = `agent/${'é€x'.repeat(20_000)}`;
  const r = { ...base, userAgent: long, path: `/${'p'.repeat(70_000)}` };
  assert.equal(recordJson(r), reference(r));
});

test('records that repeat fields of the one before and change others each read as JSON.stringify writes them', () => {
  // Each field that usually repeats, with values that differ in content, in length, in whether they are there, and
  // strings that need escaping; equal strings as different objects (slices of their own texts) too.
  const head = (text: string) => Buffer.from(`>${text}<`, 'latin1').toString('latin1').slice(1, -1);
  const choices: { [K in keyof RequestRecord]?: RequestRecord[K][] } = {
    clientIp: ['127.0.0.1', head('127.0.0.1'), '127.0.0.2', '::1'],
    method: ['GET', 'POST', head('GET')],
    host: ['example.test:8080', head('example.test:8080'), 'b.test', 'q"uote.test', 'ünï.test'],
    protocol: ['HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0'],
    status: [200, 404, 502, -0, 1e21],
    bytesIn: [0, 12, 0.5],
    service: ['web', undefined, 'api', 'web\\'],
    server: ['127.0.0.1:3001', undefined, '127.0.0.1:3002', head('127.0.0.1:3001')],
    retries: [0, 1, 2],
    queueWaitMs: [0, 0.25, 3.0004],
    decision: [undefined, 'rate-limited', 'ip-denied'],
    retryDenied: [undefined, 'budget', 'attempts'],
    errorCode: [undefined, 'UPSTREAM_TIMEOUT', 'NO_ROUTE'],
    userAgent: [undefined, head('wrk/4.2.0 (Linux x86_64)'), 'wrk/4.2.0 (Linux x86_64)', 'curl/8.0', 'tab\there', '\ud800alone', 'x'.repeat(3000)],
  };
  let seed = 29;
  const next = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return Math.floor((seed / 2 ** 31) * n);
  };
  // One buffer for every line, smaller than some of them: the kept bytes of a run are copied in past its end too.
  const out = new LineBytes(64);
  let record: RequestRecord = { ...base };
  for (let i = 0; i < 3000; i++) {
    // Mostly one field changes from the record before, sometimes none, sometimes several.
    const changes = [0, 1, 1, 1, 2, 5][next(6)] as number;
    record = { ...record, requestId: `id-${i}`, path: `/p/${i % 7}` };
    for (let c = 0; c < changes; c++) {
      const keys = Object.keys(choices) as (keyof RequestRecord)[];
      const key = keys[next(keys.length)] as keyof RequestRecord;
      const values = choices[key] as unknown[];
      record = { ...record, [key]: values[next(values.length)] };
    }
    const from = out.length;
    appendRecordJson(record, out);
    assert.equal(out.bytes.toString('utf8', from, out.length), reference(record), `record ${i}`);
    // The same record again, into a new buffer (1 KiB): every run as kept, the longest ones past that buffer's room.
    assert.equal(recordJson(record), reference(record), `record ${i} again`);
    if (out.length > 100_000) out.length = 0;
  }
});
