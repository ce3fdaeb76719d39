/** Passive health (outlier detection) on its own, with an injected clock: the ejection math and its limits. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { passiveHealthSchema } from '../../src/config/schema/resilience.ts';
import { type EjectionChange, ejectionDuration, mayEject, recordPassive } from '../../src/upstream/passive-health.ts';
import type { UpstreamServer } from '../../src/upstream/server.ts';
import { scopeOf, sharedServers } from './fixtures.ts';

const config = passiveHealthSchema.parse({ consecutive_failures: 3, base_ejection: '10s', max_ejection: '60s', max_ejected_percent: 50 });

describe('passive health', () => {
  test('ejects after N consecutive failures for base × 2^(ejections before), capped at max_ejection', () => {
    const list = sharedServers(4);
    const s = list[0] as UpstreamServer;
    const changes: EjectionChange[] = [];
    let now = 0;
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 3; i++) recordPassive(scopeOf(list), s, true, now, config, (c) => changes.push(c));
      now = s.ejectedUntil;
    }
    assert.deepEqual(
      changes.map((c) => c.ejectedForMs),
      [10_000, 20_000, 40_000, 60_000, 60_000],
    );
    assert.deepEqual(
      changes.map((c) => c.ejections),
      [1, 2, 3, 4, 5],
    );
    assert.equal(changes[0]?.reason, '3 consecutive failures');
    assert.deepEqual(
      [0, 1, 2, 3, 50].map((n) => ejectionDuration(config, n)),
      [10_000, 20_000, 40_000, 60_000, 60_000],
    );
  });

  test('a success resets the count of consecutive failures', () => {
    const list = sharedServers(2);
    const s = list[0] as UpstreamServer;
    const ejected: number[] = [];
    for (const failed of [true, true, false, true, true]) recordPassive(scopeOf(list), s, failed, 0, config, () => ejected.push(1));
    assert.deepEqual(ejected, []);
    assert.equal(s.passiveFailures, 2);
  });

  test('failures that arrive while a server is ejected do not extend the ejection', () => {
    const list = sharedServers(2);
    const s = list[0] as UpstreamServer;
    for (let i = 0; i < 3; i++) recordPassive(scopeOf(list), s, true, 0, config, () => undefined);
    for (let i = 0; i < 10; i++) recordPassive(scopeOf(list), s, true, 5_000, config, () => assert.fail('ejected again while ejected'));
    assert.equal(s.ejectedUntil, 10_000);
  });

  test('a server healthy for max_ejection after its last ejection starts over at base_ejection', () => {
    const list = sharedServers(2);
    const s = list[0] as UpstreamServer;
    const durations: number[] = [];
    const fail3 = (now: number) => {
      for (let i = 0; i < 3; i++) recordPassive(scopeOf(list), s, true, now, config, (c) => durations.push(c.ejectedForMs));
    };
    fail3(0); // 10 s
    fail3(10_000); // 20 s, until 30 s
    recordPassive(scopeOf(list), s, false, 30_000 + 60_001, config, () => undefined);
    fail3(100_000);
    assert.deepEqual(durations, [10_000, 20_000, 10_000]);
  });

  test('never ejects more than max_ejected_percent of the service; the next goes when one returns', () => {
    const list = sharedServers(4);
    const ejected: string[] = [];
    const note = (c: EjectionChange) => ejected.push(c.server);
    for (const s of list) for (let i = 0; i < 3; i++) recordPassive(scopeOf(list), s, true, 0, config, note);
    assert.deepEqual(ejected, ['s0', 's1']);
    // s2 keeps failing; once s0 and s1 are back (10 s later) it is ejected at its next failure.
    recordPassive(scopeOf(list), list[2] as UpstreamServer, true, 10_000, config, note);
    assert.deepEqual(ejected, ['s0', 's1', 's2']);
    assert.deepEqual(
      [
        [0, 4, 50],
        [1, 4, 50],
        [2, 4, 50],
        [0, 1, 50],
        [0, 1, 100],
        [0, 3, 0],
      ].map(([e, n, p]) => mayEject(e as number, n as number, p as number)),
      [true, true, false, false, true, false],
    );
  });

  test('ejecting sets when the server becomes usable again, so slow start ramps it from the end of the ejection', () => {
    const list = sharedServers(2);
    const s = list[0] as UpstreamServer;
    for (let i = 0; i < 3; i++) recordPassive(scopeOf(list), s, true, 1_000, config, () => undefined);
    assert.equal(s.usableSince, 11_000);
  });

  test('disabled passive health never ejects', () => {
    const list = sharedServers(2);
    const off = passiveHealthSchema.parse({ enabled: false });
    for (let i = 0; i < 100; i++) recordPassive(scopeOf(list), list[0] as UpstreamServer, true, i, off, () => assert.fail('ejected'));
  });
});
