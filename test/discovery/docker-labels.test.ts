import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ContainerSummary } from '../../src/discovery/docker-client.ts';
import { containerToServer } from '../../src/discovery/docker-provider.ts';

const container = (labels: Record<string, string>, extra: Partial<ContainerSummary> = {}): ContainerSummary => ({
  Id: 'abc123def4567890',
  Names: ['/web-1'],
  Image: 'localhost/web:test',
  State: 'running',
  Labels: labels,
  Ports: [],
  NetworkSettings: { Networks: { bridge: { IPAddress: '172.17.0.5' }, lab: { IPAddress: '10.202.0.7' } } },
  ...extra,
});

describe('container labels', () => {
  test('a labelled container becomes a server at its IP on the chosen network', () => {
    const read = containerToServer(
      container({ 'velocity.service': 'web', 'velocity.port': '8080', 'velocity.network': 'lab', 'velocity.weight': '3', 'velocity.health.path': '/ready' }),
      'velocity',
      undefined,
    );
    assert.deepEqual(read, { service: 'web', server: { url: 'http://10.202.0.7:8080', weight: 3, name: 'web-1', healthPath: '/ready' } });
  });

  test('the provider-wide network applies when the container names none', () => {
    const read = containerToServer(container({ 'velocity.service': 'web', 'velocity.port': '80' }), 'velocity', 'bridge');
    assert.equal(read && 'server' in read ? read.server.url : undefined, 'http://172.17.0.5:80');
  });

  test('address=published uses the host port mapping on loopback', () => {
    const read = containerToServer(
      container(
        { 'velocity.service': 'web', 'velocity.port': '8080', 'velocity.address': 'published' },
        { Ports: [{ IP: '0.0.0.0', PrivatePort: 8080, PublicPort: 32768, Type: 'tcp' }] },
      ),
      'velocity',
      undefined,
    );
    assert.equal(read && 'server' in read ? read.server.url : undefined, 'http://127.0.0.1:32768');
  });

  test('a port label that is not a number is skipped with the reason', () => {
    const read = containerToServer(container({ 'velocity.service': 'web', 'velocity.port': 'http' }), 'velocity', undefined);
    assert.deepEqual(read, { skip: 'container web-1: label velocity.port is "http", not a port number' });
  });

  test('a bad weight is skipped with the reason', () => {
    const read = containerToServer(container({ 'velocity.service': 'web', 'velocity.port': '80', 'velocity.weight': '0' }), 'velocity', undefined);
    assert.ok(read && 'skip' in read && /velocity\.weight is "0"/.test(read.skip));
  });

  test('a container without the service label is not Velocity’s', () => {
    assert.equal(containerToServer(container({ other: 'x' }), 'velocity', undefined), undefined);
  });

  test('a custom label prefix is honoured', () => {
    const read = containerToServer(container({ 'lb.service': 'api', 'lb.port': '9000' }), 'lb', 'lab');
    assert.equal(read && 'server' in read ? read.server.url : undefined, 'http://10.202.0.7:9000');
  });
});
