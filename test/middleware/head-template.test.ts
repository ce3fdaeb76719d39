/**
 * Header-rule values with placeholders (src/middleware/head.ts, template): compiled once into constant text and
 * request values, so each request joins pieces instead of matching a pattern. These pin what a value becomes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { headerValue, removeHeader, setHeader, template } from '../../src/middleware/head.ts';

const req = { clientIp: '203.0.113.7', requestId: 'r-1', host: 'app.example', method: 'GET', url: '/a?b=1', proto: 'https' };

/** Behaviours, each with values as written in a rule and what they become for `req`. */
const BEHAVIOURS: [behaviour: string, cases: [text: string, value: string][]][] = [
  [
    'a value without placeholders is itself, for every request',
    [
      ['bench', 'bench'],
      ['', ''],
    ],
  ],
  [
    'a value that is one placeholder is that request value',
    [
      ['\x24{client_ip}', '203.0.113.7'],
      ['\x24{scheme}', 'https'],
    ],
  ],
  [
    'placeholders between and around constant text are each replaced, in order',
    [
      ['req-\x24{request_id}', 'req-r-1'],
      ['\x24{method} \x24{host}\x24{path}', 'GET app.example/a?b=1'],
      ['[\x24{client_ip}|\x24{client_ip}] via \x24{scheme}.', '[203.0.113.7|203.0.113.7] via https.'],
    ],
  ],
  [
    'text that only looks like a placeholder stays as it is',
    [
      ['\x24{unknown} and \x24{host', '\x24{unknown} and \x24{host'],
      ['\x24\x24{host}}', '$app.example}'],
    ],
  ],
];

for (const [behaviour, cases] of BEHAVIOURS) {
  test(behaviour, () => {
    for (const [text, value] of cases) assert.equal(template(text)(req), value, text);
  });
}

test('header lists are searched and edited by lower-case name in any case', () => {
  const list = ['Content-Type', 'text/plain', 'X-Served-By', 'app', 'x-served-by', 'other'];
  assert.equal(headerValue(list, 'content-type'), 'text/plain');
  assert.equal(headerValue(list, 'x-missing'), undefined);
  setHeader(list, 'x-served-by', 'velocity');
  assert.deepEqual(list, ['Content-Type', 'text/plain', 'x-served-by', 'velocity']);
  removeHeader(list, 'content-type');
  assert.deepEqual(list, ['x-served-by', 'velocity']);
});
