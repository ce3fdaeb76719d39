/**
 * Header-rule values with placeholders (src/middleware/head.ts, template): compiled once into constant text and
 * request values, so each request joins pieces instead of matching a pattern. These pin what a value becomes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { headerValue, removeHeader, setHeader, template } from '../../src/middleware/head.ts';

const req = { clientIp: '203.0.113.7', requestId: 'r-1', host: 'app.example', method: 'GET', url: '/a?b=1', proto: 'https' };

test('a value without placeholders is itself, for every request', () => {
  assert.equal(template('bench')(req), 'bench');
  assert.equal(template('')(req), '');
});

test('a value that is one placeholder is that request value', () => {
  assert.equal(template('\x24{client_ip}')(req), '203.0.113.7');
  assert.equal(template('\x24{scheme}')(req), 'https');
});

test('placeholders between and around constant text are each replaced, in order', () => {
  assert.equal(template('req-\x24{request_id}')(req), 'req-r-1');
  assert.equal(template('\x24{method} \x24{host}\x24{path}')(req), 'GET app.example/a?b=1');
  assert.equal(template('[\x24{client_ip}|\x24{client_ip}] via \x24{scheme}.')(req), '[203.0.113.7|203.0.113.7] via https.');
});

test('text that only looks like a placeholder stays as it is', () => {
  assert.equal(template('\x24{unknown} and \x24{host')(req), '\x24{unknown} and \x24{host');
  assert.equal(template('\x24\x24{host}}')(req), '$app.example}');
});

test('header lists are searched and edited by lower-case name in any case', () => {
  const list = ['Content-Type', 'text/plain', 'X-Served-By', 'app', 'x-served-by', 'other'];
  assert.equal(headerValue(list, 'content-type'), 'text/plain');
  assert.equal(headerValue(list, 'x-missing'), undefined);
  setHeader(list, 'x-served-by', 'velocity');
  assert.deepEqual(list, ['Content-Type', 'text/plain', 'x-served-by', 'velocity']);
  removeHeader(list, 'content-type');
  assert.deepEqual(list, ['x-served-by', 'velocity']);
});
