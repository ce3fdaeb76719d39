/** One access-log record of a plain proxied GET, for tests and benches that need a realistic one. */
import type { RequestRecord } from '../../src/observe/events.ts';

export const SAMPLE_RECORD: Readonly<RequestRecord> = {
  time: 1764581000123,
  requestId: 'a8ec8017-5ce4-490a-b29f-1f6bead17095',
  clientIp: '127.0.0.1',
  method: 'GET',
  host: 'example.test:8080',
  path: '/a?b=c',
  protocol: 'HTTP/1.1',
  status: 200,
  bytesIn: 0,
  bytesOut: 21,
  service: 'web',
  server: '127.0.0.1:3001',
  upstreamFirstByteMs: 0.41234567891234,
  upstreamMs: 0.5231,
  totalMs: 0.7123456,
  retries: 0,
  queueWaitMs: 0,
  decision: undefined,
  retryDenied: undefined,
  errorCode: undefined,
  userAgent: undefined,
};
