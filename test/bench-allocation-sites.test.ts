/** bench/alloc.ts's table: a sampling heap profile summed into bytes per request by allocating function and callers. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allocationSites, type HeapProfileNode } from '../bench/allocation-sites.ts';

const node = (functionName: string, url: string, line: number, selfSize: number, children: HeapProfileNode[] = []): HeapProfileNode => ({
  callFrame: { functionName, url, lineNumber: line - 1, columnNumber: 0 },
  selfSize,
  children,
});

test('bytes are summed per site (function and callers up to the depth), divided by requests, heaviest first', () => {
  const head = node('(root)', '', 1, 0, [
    node('onRead', 'file:///x/dist/upstream/conn.js', 10, 100, [node('send', 'file:///x/dist/upstream/exchange.js', 5, 3000), node('', 'file:///x/dist/observe/log.js', 7, 500)]),
    node('serve', 'file:///x/dist/proxy/handler.js', 20, 0, [node('send', 'file:///x/dist/upstream/exchange.js', 5, 1000)]),
  ]);
  const depth1 = allocationSites(head, 10, 1);
  assert.equal(depth1.bytesPerRequest, 460);
  assert.deepEqual(depth1.sites, [
    { site: 'send upstream/exchange.js:5:1', bytesPerRequest: 400 },
    { site: '(anonymous) observe/log.js:7:1', bytesPerRequest: 50 },
    { site: 'onRead upstream/conn.js:10:1', bytesPerRequest: 10 },
  ]);
  const depth2 = allocationSites(head, 10, 2).sites.map((s) => s.site);
  assert.deepEqual(depth2.slice(0, 2), ['send upstream/exchange.js:5:1 < onRead upstream/conn.js:10:1', 'send upstream/exchange.js:5:1 < serve proxy/handler.js:20:1']);
});
