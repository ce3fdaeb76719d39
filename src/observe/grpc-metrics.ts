/**
 * Per-method gRPC metrics: calls by service, method and status, and their
 * duration. Counted on the main thread from request records (worker threads
 * forward theirs), kept bounded: past MAX_METHODS distinct methods, further ones
 * are counted under grpc_method="other" so a client cannot grow the label set.
 */
import type { RequestRecord } from './events.ts';
import { BUCKETS, bucketOf, type MetricSource } from './metrics.ts';

const CODE_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];
export const MAX_METHODS = 500;

interface MethodCells {
  service: string;
  method: string;
  codes: Map<string, number>;
  histogram: BigInt64Array;
  sumMicros: bigint;
}

/** The name of a gRPC status code (a call that ended without one — the client left — is CANCELLED). */
export function grpcCodeName(record: RequestRecord): string {
  if (record.grpcStatus === undefined) return record.status === 499 ? 'CANCELLED' : 'UNKNOWN';
  return CODE_NAMES[record.grpcStatus] ?? String(record.grpcStatus);
}

export class GrpcMethodMetrics {
  private readonly methods = new Map<string, MethodCells>();

  readonly observe = (record: RequestRecord): void => {
    if (record.grpcMethod === undefined) return;
    const service = record.service ?? '';
    let key = `${service} ${record.grpcMethod}`;
    let cells = this.methods.get(key);
    if (!cells) {
      const method = this.methods.size < MAX_METHODS ? record.grpcMethod : 'other';
      key = `${service} ${method}`;
      cells = this.methods.get(key);
      if (!cells) {
        cells = { service, method, codes: new Map(), histogram: new BigInt64Array(BUCKETS.length + 1), sumMicros: 0n };
        this.methods.set(key, cells);
      }
    }
    const code = grpcCodeName(record);
    cells.codes.set(code, (cells.codes.get(code) ?? 0) + 1);
    const bucket = bucketOf(record.totalMs / 1000);
    cells.histogram[bucket] = (cells.histogram[bucket] as bigint) + 1n;
    cells.sumMicros += BigInt(Math.round(record.totalMs * 1000));
  };

  render(out: Parameters<MetricSource>[0]): void {
    for (const cells of this.methods.values()) {
      out.declare('velocity_grpc_calls_total', 'counter', 'gRPC calls by service, method and the status the client got.');
      for (const [code, n] of cells.codes) out.sample('velocity_grpc_calls_total', { service: cells.service, grpc_method: cells.method, grpc_code: code }, n);
    }
    for (const cells of this.methods.values()) {
      out.declare('velocity_grpc_call_duration_seconds', 'histogram', 'gRPC call duration by service and method.');
      const labels = { service: cells.service, grpc_method: cells.method };
      let cumulative = 0n;
      cells.histogram.forEach((n, i) => {
        cumulative += n;
        out.sample('velocity_grpc_call_duration_seconds_bucket', { ...labels, le: i < BUCKETS.length ? String(BUCKETS[i]) : '+Inf' }, cumulative);
      });
      out.sample('velocity_grpc_call_duration_seconds_sum', labels, Number(cells.sumMicros) / 1e6);
      out.sample('velocity_grpc_call_duration_seconds_count', labels, cumulative);
    }
  }
}
