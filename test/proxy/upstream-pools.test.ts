/**
 * UpstreamPools.get answers a server's pool from the last one it gave that server: the same pool the
 * pool set would give (its URL's current pool, made with these options), never one the set let go.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpstreamPools } from '../../src/proxy/forwarder.ts';
import { SharedState } from '../../src/state/shared-state.ts';
import type { UpstreamPoolOptions } from '../../src/upstream/http1-pool.ts';
import { UpstreamServer } from '../../src/upstream/server.ts';

function serverAt(state: SharedState, slot: number, url: string): UpstreamServer {
  return new UpstreamServer({ id: `s${slot}`, url, slot }, state, 0, { slowStartMs: 0, halfOpenLimit: 1 });
}

test('a server gets the pool of its URL again; new options, a removed URL or a replaced pool give a new one', async () => {
  const state = new SharedState();
  const pools = new UpstreamPools();
  const options: UpstreamPoolOptions = { connectTimeout: 1000, keepAliveTimeout: 60_000 };
  const a = serverAt(state, 0, 'http://127.0.0.1:18001');
  const b = serverAt(state, 1, 'http://127.0.0.1:18002');
  const first = pools.get(a, options);
  assert.equal(pools.get(a, options), first);
  assert.notEqual(pools.get(b, options), first);
  assert.equal(pools.get(a, options), first);

  // Another service's server object for the same URL, same options: the same pool.
  const twin = serverAt(state, 2, 'http://127.0.0.1:18001');
  assert.equal(pools.get(twin, options), first);

  // A reload changed the service's settings: a new pool, the old one closed (it drains).
  const reloaded: UpstreamPoolOptions = { connectTimeout: 2000, keepAliveTimeout: 60_000 };
  const second = pools.get(a, reloaded);
  assert.notEqual(second, first);
  assert.equal(first.open, false);
  assert.equal(pools.get(a, reloaded), second);

  // The twin asks with the old options: the set replaces the pool again, and `a` must not be given the one it closed.
  const third = pools.get(twin, options);
  assert.equal(second.open, false);
  const fourth = pools.get(a, reloaded);
  assert.notEqual(fourth, second);
  assert.equal(fourth.open, true);

  // The slot went to a server of another URL (a reload removed one server and added another): that URL's own pool.
  const other = serverAt(state, 0, 'http://127.0.0.1:18003');
  const otherPool = pools.get(other, reloaded);
  assert.notEqual(otherPool, fourth);
  assert.equal(fourth.open, true, 'the first URL keeps its pool');
  assert.equal(pools.get(a, reloaded), fourth);

  // The URL left the config: its pool was closed; asked again (a request still in flight), the server gets an open one.
  await pools.retain(new Set());
  assert.equal(fourth.open, false);
  assert.equal(third.open, false);
  assert.equal(otherPool.open, false);
  const fifth = pools.get(a, reloaded);
  assert.equal(fifth.open, true);
  assert.notEqual(fifth, fourth);
  await pools.closeAll();
});
