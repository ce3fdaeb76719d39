/** A server's response head as the upstream response parser reads it (tests of what the parser makes of a head). */
import { Buffer } from 'node:buffer';
import { type ResponseHead, ResponseParser } from '../../src/upstream/response-parser.ts';

/** The head parsed from `text` (a whole head, ending with its empty line); `headRequest`: it answers a HEAD. */
export function parseResponseHead(text: string, headRequest = false): ResponseHead {
  let head: ResponseHead | undefined;
  const parser = new ResponseParser({
    onInformational() {},
    onResponseHead(h) {
      head = h;
      return false;
    },
    onResponseBody() {},
    onResponseComplete() {},
  });
  parser.reset(headRequest);
  parser.execute(Buffer.from(text, 'latin1'));
  if (!head) throw new Error(`no head parsed from ${JSON.stringify(text)}`);
  return head;
}
