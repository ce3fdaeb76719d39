/**
 * A 101 Switching Protocols from the response parser's point of view (src/upstream/response-parser.ts):
 * refused on an ordinary request, as llhttp's client refuses it; a final head without a body when the
 * request asked to upgrade, the bytes after it left to the new protocol — also when the head came in
 * pieces and the new protocol's bytes came with its last one.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { test } from 'node:test';
import { type ResponseHead, ResponseParser } from '../../src/upstream/response-parser.ts';

const SWITCH = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';

function parserFor(upgrade: boolean) {
  const seen: { heads: ResponseHead[]; bodies: number; complete: boolean } = { heads: [], bodies: 0, complete: false };
  const parser = new ResponseParser({
    onInformational() {},
    onResponseHead(head) {
      seen.heads.push(head);
      return false;
    },
    onResponseBody() {
      seen.bodies++;
    },
    onResponseComplete() {
      seen.complete = true;
    },
  });
  parser.reset(false, upgrade);
  return { parser, seen };
}

test('a 101 to a request that did not ask to upgrade is refused', () => {
  const { parser } = parserFor(false);
  assert.throws(() => parser.execute(Buffer.from(`${SWITCH}frames`, 'latin1')), /unexpected 101/);
});

test("a 101 to an upgrade is a final head without a body; the bytes after it are the new protocol's", () => {
  const { parser, seen } = parserFor(true);
  const bytes = Buffer.from(`${SWITCH}frames`, 'latin1');
  const used = parser.execute(bytes);
  assert.equal(bytes.subarray(used).toString('latin1'), 'frames');
  assert.equal(seen.heads.length, 1);
  assert.equal(seen.heads[0]?.status, 101);
  assert.equal(seen.heads[0]?.length, 0);
  assert.deepEqual(seen.heads[0]?.headers, ['Upgrade', 'websocket', 'Connection', 'Upgrade']);
  assert.equal(seen.bodies, 0, 'no body read out of the new protocol');
  assert.ok(seen.complete);
});

test('a 101 head in pieces: the last piece is split where the head ends', () => {
  const { parser, seen } = parserFor(true);
  assert.equal(parser.execute(Buffer.from(SWITCH.slice(0, 20), 'latin1')), 20);
  const last = Buffer.from(`${SWITCH.slice(20)}frames`, 'latin1');
  const used = parser.execute(last);
  assert.equal(last.subarray(used).toString('latin1'), 'frames');
  assert.equal(seen.heads[0]?.status, 101);
});

test('an upgrade answered otherwise reads that answer and its body as usual', () => {
  const { parser, seen } = parserFor(true);
  parser.execute(Buffer.from('HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nlogin', 'latin1'));
  assert.equal(seen.heads[0]?.status, 401);
  assert.equal(seen.bodies, 1);
  assert.ok(seen.complete);
});
