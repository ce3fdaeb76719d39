/** The router's memory of the last Host: a repeated Host and a changed one route as a router that never saw a request does. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Route, Router } from '../../src/proxy/router.ts';

test('the last Host remembered by the router never changes where a request goes', () => {
  const routes: Route<string>[] = [
    { hosts: ['a.example'], paths: ['/api'], target: 'a-api' },
    { hosts: ['*.example'], paths: ['/'], target: 'wild' },
    { hosts: ['*.b.example'], paths: ['/x'], target: 'wild-b-x' },
    { hosts: ['*'], paths: ['/'], target: 'default' },
  ];
  const hosts = [undefined, '', 'a.example', 'A.Example:8080', 'a.example.', 'c.b.example', 'b.example', 'other', '[::1]:80', 'a.example'];
  const paths = ['/', '/api', '/api/x', '/apix', '/x', '/x?y'];
  const warm = new Router(routes);
  // Every host after every other (and after itself), each with every path.
  for (const first of hosts) {
    for (const host of hosts) {
      for (const path of paths) {
        warm.match(first, path);
        assert.equal(warm.match(host, path), new Router(routes).match(host, path), `${first} then ${host} ${path}`);
        assert.equal(warm.match(host, path), new Router(routes).match(host, path), `${host} twice ${path}`);
      }
    }
  }
});
