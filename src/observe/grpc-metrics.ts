/**
 * Per-method gRPC metrics: calls by service, method and status, and their
 * duration. Counted on the main thread from request records (worker threads
 * forward theirs), kept bounded: past MAX_METHODS distinct methods, further ones
 * are counted under grpc_method="other" so a client cannot grow the label set.
 */
import type { RequestRecord } from './events.ts';
import { bucketIndex, DURATION_BUCKETS } from './metric-table.ts';
import type { CollectedSample, Collectors } from './metrics.ts';

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
        cells = { service, method, codes: new Map(), histogram: new BigInt64Array(DURATION_BUCKETS.length + 1), sumMicros: 0n };
        this.methods.set(key, cells);
      }
    }
    const code = grpcCodeName(record);
    cells.codes.set(code, (cells.codes.get(code) ?? 0) + 1);
    const bucket = bucketIndex(DURATION_BUCKETS, record.totalMs / 1000);
    cells.histogram[bucket] = (cells.histogram[bucket] as bigint) + 1n;
    cells.sumMicros += BigInt(Math.round(record.totalMs * 1000));
  };

  /** The samples of `velocity_grpc_calls_total` and `velocity_grpc_call_duration_seconds` (declared in metric-table.ts). */
  readonly collectors: Collectors = {
    velocity_grpc_calls_total: () => {
      const samples: CollectedSample[] = [];
      for (const cells of this.methods.values()) {
        for (const [code, n] of cells.codes) samples.push({ labels: { service: cells.service, grpc_method: cells.method, grpc_code: code }, value: n });
      }
      return samples;
    },
    velocity_grpc_call_duration_seconds: () =>
      [...this.methods.values()].map((cells) => ({
        labels: { service: cells.service, grpc_method: cells.method },
        buckets: [...cells.histogram],
        sum: Number(cells.sumMicros) / 1e6,
      })),
  };
}
