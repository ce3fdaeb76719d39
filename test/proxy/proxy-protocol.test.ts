/** PROXY protocol v1/v2 headers, byte for byte against HAProxy's specification. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ipv6Bytes, proxyHeaderV1, proxyHeaderV2 } from '../../src/proxy/proxy-protocol.ts';
import { parseProxyHeader } from './proxy-protocol-parser.ts';

const v4 = { sourceAddress: '192.0.2.10', sourcePort: 51234, destinationAddress: '198.51.100.1', destinationPort: 6379 };

test('v1 names TCP4 with source, destination and ports', () => {
  assert.equal(proxyHeaderV1(v4), 'PROXY TCP4 192.0.2.10 198.51.100.1 51234 6379\r\n');
});

test('v1 turns IPv4-mapped IPv6 addresses (as Node reports them) back into IPv4', () => {
  assert.equal(proxyHeaderV1({ ...v4, sourceAddress: '::ffff:127.0.0.1', destinationAddress: '::ffff:127.0.0.2' }), 'PROXY TCP4 127.0.0.1 127.0.0.2 51234 6379\r\n');
});

test('v1 uses TCP6 for IPv6, mapping an IPv4 end when the two differ', () => {
  assert.equal(proxyHeaderV1({ ...v4, sourceAddress: '2001:db8::1', destinationAddress: '2001:db8::2' }), 'PROXY TCP6 2001:db8::1 2001:db8::2 51234 6379\r\n');
  assert.equal(proxyHeaderV1({ ...v4, sourceAddress: '2001:db8::1' }), 'PROXY TCP6 2001:db8::1 ::ffff:198.51.100.1 51234 6379\r\n');
});

test('v1 says UNKNOWN when an address is missing', () => {
  assert.equal(proxyHeaderV1({ ...v4, sourceAddress: undefined }), 'PROXY UNKNOWN\r\n');
});

test('v2 is the 12-byte signature, PROXY command, TCP over IPv4, 12 address bytes', () => {
  const header = proxyHeaderV2(v4);
  assert.equal(
    header.toString('hex'),
    [
      '0d0a0d0a000d0a515549540a', // signature
      '21', // version 2, PROXY
      '11', // AF_INET, STREAM
      '000c', // 12 bytes follow
      'c000020a', // 192.0.2.10
      'c6336401', // 198.51.100.1
      'c822', // 51234
      '18eb', // 6379
    ].join(''),
  );
});

test('v2 over IPv6 carries 36 address bytes', () => {
  const header = proxyHeaderV2({ ...v4, sourceAddress: '2001:db8::1', destinationAddress: '::1' });
  assert.equal(header.length, 16 + 36);
  assert.equal(header[13], 0x21, 'AF_INET6, STREAM');
  assert.equal(header.readUInt16BE(14), 36);
  assert.equal(header.subarray(16, 32).toString('hex'), '20010db8000000000000000000000001');
  assert.equal(header.subarray(32, 48).toString('hex'), '00000000000000000000000000000001');
});

test('v2 without addresses is a LOCAL header with no address block', () => {
  assert.equal(proxyHeaderV2({ ...v4, destinationPort: undefined }).toString('hex'), '0d0a0d0a000d0a515549540a20000000');
});

test('IPv6 text expands to 16 bytes, with :: anywhere and a dotted IPv4 tail', () => {
  assert.equal(ipv6Bytes('::').toString('hex'), '0'.repeat(32));
  assert.equal(ipv6Bytes('fe80::1%eth0').toString('hex'), 'fe800000000000000000000000000001');
  assert.equal(ipv6Bytes('1:2:3:4:5:6:7:8').toString('hex'), '00010002000300040005000600070008');
  assert.equal(ipv6Bytes('::ffff:10.1.2.3').toString('hex'), '00000000000000000000ffff0a010203');
});

test('the test parser reads back what both versions write', () => {
  for (const ends of [v4, { ...v4, sourceAddress: '2001:db8::5', destinationAddress: '2001:db8::6' }]) {
    const v1 = parseProxyHeader(Buffer.from(proxyHeaderV1(ends)));
    const v2 = parseProxyHeader(proxyHeaderV2(ends));
    for (const parsed of [v1, v2]) {
      assert.equal(parsed?.sourceAddress, ends.sourceAddress);
      assert.equal(parsed?.destinationAddress, ends.destinationAddress);
      assert.equal(parsed?.sourcePort, ends.sourcePort);
      assert.equal(parsed?.destinationPort, ends.destinationPort);
    }
  }
});
