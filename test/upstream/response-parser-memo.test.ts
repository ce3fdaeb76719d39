/**
 * A response parser remembers the last final head it read and takes the same bytes again without
 * parsing them (src/upstream/response-parser.ts). Whatever it remembered, it must read every response
 * exactly as a new parser does: each head its own object, a HEAD request's answer without a body, and
 * any byte that differs read as it is.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ResponseHead, ResponseParser } from '../../src/upstream/response-parser.ts';

/** 148 bytes: a multiple of four. */
const HEAD = 'HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 06:40:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nConnection: keep-alive\r\n\r\n';
const BODY = 'hello from the body!\n';
const RESPONSE = Buffer.from(HEAD + BODY, 'latin1');

interface Reading {
  error?: string;
  head?: Record<string, unknown>;
  body?: string;
  consumed?: number;
  complete?: boolean;
}

const view = (h: ResponseHead) => ({
  status: h.status,
  reason: h.reason,
  keepAlive: h.keepAlive,
  closeDelimited: h.closeDelimited,
  length: h.length,
  endToEndLines: h.endToEndLines,
  withStatusLine: h.withStatusLine,
  hasDate: h.hasDate,
  hasContentLength: h.hasContentLength,
  keepAliveTimeoutMs: h.keepAliveTimeoutMs,
  headers: [...h.headers],
});

/** A parser kept from reading to reading, as a connection keeps its own; `heads` collects what it handed over. */
function reader() {
  let head: ResponseHead | undefined;
  let body: Buffer[] = [];
  let complete = false;
  const heads: ResponseHead[] = [];
  const parser = new ResponseParser({
    onInformational() {},
    onResponseHead(h) {
      head = h;
      heads.push(h);
      return false;
    },
    onResponseBody(chunk) {
      body.push(Buffer.from(chunk));
    },
    onResponseComplete() {
      complete = true;
    },
  });
  const read = (pieces: Buffer[], method = 'GET'): Reading => {
    head = undefined;
    body = [];
    complete = false;
    parser.reset(method === 'HEAD');
    try {
      let consumed = 0;
      for (const piece of pieces) if (!complete) consumed += parser.execute(piece);
      return { head: head && view(head), body: Buffer.concat(body).toString('latin1'), consumed, complete };
    } catch (err) {
      return { error: (err as Error).message };
    }
  };
  return { read, heads };
}

const fresh = (pieces: Buffer[], method = 'GET') => reader().read(pieces, method);

/**
 * The bytes in a buffer that is a whole ArrayBuffer of its own, as the pool reads (compared four bytes at a
 * time, see head-memo.ts), or at `offset` in a larger one; Buffer.from's come from Node's shared pool (Buffer#compare).
 */
function own(bytes: Buffer, offset = 0): Buffer {
  const whole = Buffer.allocUnsafeSlow(offset + bytes.length);
  bytes.copy(whole, offset);
  return offset === 0 ? whole : whole.subarray(offset);
}

test('the same head again is read as the first time, as a head of its own whose header list is its own', () => {
  const r = reader();
  // The memo is made with the second head (a connection that sends one response never pays for it): the third is from it.
  for (let n = 0; n < 2; n++) {
    const reading = r.read([RESPONSE]);
    assert.equal(reading.complete, true);
    assert.equal(reading.body, BODY);
  }
  r.heads[1]?.headers.push('x-added', 'by a consumer');
  const third = r.read([RESPONSE]);
  assert.deepEqual(third, fresh([RESPONSE]));
  assert.notEqual(r.heads[2], r.heads[1]);
  assert.equal(r.heads[2]?.headers.includes('x-added'), false);
});

test('a parser that reads one response keeps no memo: 2,000 such parsers hold no 1 KiB buffer each', () => {
  const before = process.memoryUsage().arrayBuffers;
  const parsers = Array.from({ length: 2_000 }, () => {
    const r = reader();
    r.read([RESPONSE]);
    return r;
  });
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.equal(parsers.length, 2_000);
  assert.ok(grown < 512 * 1024, `${(grown / 1024).toFixed(0)} KiB of ArrayBuffers for 2,000 parsers`);
});

test("a HEAD request's answer with a remembered head has no body, and the next GET's has its own again", () => {
  const r = reader();
  r.read([RESPONSE]);
  r.read([RESPONSE]);
  const head = Buffer.from(HEAD, 'latin1');
  const answer = r.read([head], 'HEAD');
  assert.deepEqual(answer, fresh([head], 'HEAD'));
  assert.equal(answer.complete, true);
  assert.equal(answer.head?.length, 0);
  assert.deepEqual(r.read([RESPONSE]), fresh([RESPONSE]));
});

test('every one-byte change, insertion and removal in a remembered head is read as a new parser reads it', () => {
  const values = [0x00, 0x09, 0x0a, 0x0d, 0x20, 0x2c, 0x30, 0x31, 0x39, 0x3a, 0x41, 0x61, 0x7f, 0xff];
  const r = reader();
  let checked = 0;
  // The head as it is (148 bytes), then with 1 to 3 bytes more (compared four at a time, the last 1 to 3 bytes one by one): those near their end.
  for (let pad = 0; pad < 4; pad++) {
    const head = pad === 0 ? HEAD : HEAD.replace('\r\n\r\n', `\r\nX-Pad: ${'y'.repeat(4 + pad)}\r\n\r\n`);
    const response = Buffer.from(head + BODY, 'latin1');
    for (let at = pad === 0 ? 0 : head.length - 12; at < head.length + 2; at++) {
      const variants: Buffer[] = [Buffer.concat([response.subarray(0, at), response.subarray(at + 1)])];
      for (const v of values) {
        const changed = Buffer.from(response);
        changed[at] = v;
        variants.push(changed, Buffer.concat([response.subarray(0, at), Buffer.of(v), response.subarray(at)]));
      }
      for (const variant of variants) {
        // Remembered first (read twice: the second reading is from the memo), then the variant, from a pooled
        // buffer and from one of its own.
        for (const copy of [(b: Buffer) => b, own]) {
          r.read([copy(response)]);
          assert.deepEqual(r.read([copy(response)]), fresh([response]));
          assert.deepEqual(r.read([copy(variant)]), fresh([variant]), `byte ${at}: ${JSON.stringify(variant.toString('latin1'))}`);
          checked++;
        }
      }
    }
  }
  assert.ok(checked > 10_000);
});

test('a remembered head that arrives in two pieces, split anywhere, and heads that differ in a row', () => {
  const r = reader();
  r.read([RESPONSE]);
  for (let at = 1; at < RESPONSE.length; at++) {
    for (const pieces of [
      [RESPONSE.subarray(0, at), RESPONSE.subarray(at)],
      [own(RESPONSE.subarray(0, at)), own(RESPONSE.subarray(at))],
    ]) {
      assert.deepEqual(r.read(pieces), fresh(pieces), `split at ${at}`);
    }
  }
  // Behind an interim response in the same read, at every alignment; and at an offset into a larger buffer.
  const interim = 'HTTP/1.1 100 Continue\r\n';
  for (let pad = 0; pad < 4; pad++) {
    const read = own(Buffer.from(`${interim}X-Pad: ${'y'.repeat(pad)}\r\n\r\n${HEAD}${BODY}`, 'latin1'));
    assert.deepEqual(r.read([read]), fresh([read]), `behind a 1xx head, pad ${pad}`);
    assert.deepEqual(r.read([own(RESPONSE, pad + 1)]), fresh([RESPONSE]), `at offset ${pad + 1}`);
  }
  // Heads that all differ (past the misses after which the memo rests), then the same one again and again.
  for (let n = 0; n < 2_000; n++) {
    const body = 'x'.repeat(n % 50);
    const response = Buffer.from(`HTTP/1.1 200 OK\r\nX-Id: ${n}\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 'latin1');
    assert.deepEqual(r.read([response]), fresh([response]));
  }
  for (let n = 0; n < 3; n++) assert.deepEqual(r.read([RESPONSE]), fresh([RESPONSE]));
});
