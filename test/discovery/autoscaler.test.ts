import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { autoscaleSchema } from '../../src/config/schema/discovery.ts';
import { Autoscaler, decide } from '../../src/discovery/autoscaler.ts';
import { silentLogger } from '../../src/observe/logger.ts';

const config = autoscaleSchema.parse({
  min: 1,
  max: 6,
  target: { in_flight_per_server: 10 },
  scale_up_cooldown: '10s',
  scale_down_cooldown: '60s',
  stabilization_window: '30s',
});

describe('autoscaling decisions', () => {
  test('desired = ceil(current × metric / target)', () => {
    const d = decide(config, { current: 2, value: 25, now: 100_000, lastChange: 0, recentWanted: [] });
    assert.equal(d.desired, 5);
    assert.equal(d.action, 'scale-up');
  });

  test('clamps to max and min', () => {
    assert.equal(decide(config, { current: 4, value: 100, now: 100_000, lastChange: 0, recentWanted: [] }).desired, 6);
    assert.equal(decide(config, { current: 3, value: 0, now: 100_000, lastChange: 0, recentWanted: [] }).desired, 1);
  });

  test('holds a scale-up during the scale-up cooldown', () => {
    const d = decide(config, { current: 2, value: 25, now: 105_000, lastChange: 100_000, recentWanted: [] });
    assert.equal(d.action, 'hold');
    assert.equal(d.reason, 'scale-up cooldown');
  });

  test('scales down only to the highest count wanted within the stabilization window', () => {
    // wanted now: ceil(5 × 5 / 10) = 3; within the last 30 s a count of 4 was wanted; 5 was wanted before that.
    const recent = [
      { at: 70_000, wanted: 5 },
      { at: 95_000, wanted: 4 },
    ];
    const d = decide(config, { current: 5, value: 5, now: 110_000, lastChange: 0, recentWanted: recent });
    assert.equal(d.action, 'scale-down');
    assert.equal(d.desired, 4);
    const held = decide(config, { current: 4, value: 5, now: 110_000, lastChange: 0, recentWanted: recent });
    assert.equal(held.action, 'hold');
  });

  test('holds a scale-down during the scale-down cooldown', () => {
    const d = decide(config, { current: 4, value: 1, now: 100_000, lastChange: 70_000, recentWanted: [] });
    assert.equal(d.action, 'hold');
    assert.equal(d.reason, 'scale-down cooldown');
  });

  test('min greater than max is a config error', () => {
    const result = autoscaleSchema.safeParse({ min: 5, max: 2, target: { rps_per_server: 100 } });
    assert.equal(result.success, false);
    assert.match(JSON.stringify(result.error?.issues), /min must not be greater than max/);
  });

  test('the autoscaler logs each change with the metric that caused it and drives the target', async () => {
    let count = 1;
    let clock = 1_000_000;
    let value = 30;
    const scaler = new Autoscaler(
      'svc',
      config,
      {
        get count() {
          return count;
        },
        scaleTo: async (n) => {
          count = n;
        },
      },
      { read: () => value },
      silentLogger(),
      () => clock,
    );
    scaler.start();
    scaler.stop();
    clock += 11_000;
    const up = await scaler.tick();
    assert.equal(up?.action, 'scale-up');
    assert.equal(count, 3);
    assert.equal(up?.value, 30);
    value = 1;
    clock += 5_000;
    assert.equal((await scaler.tick())?.action, 'hold');
    clock += 61_000;
    const down = await scaler.tick();
    assert.equal(down?.action, 'scale-down');
    assert.equal(count, 1);
    assert.equal(scaler.decisions.length, 3);
  });
});
