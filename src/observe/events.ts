/**
 * What the data path tells observers (access log, metrics, dashboard). Observers
 * listen; they never change the outcome of a request.
 */

export interface RequestRecord {
  /** Epoch ms when the request arrived. */
  time: number;
  requestId: string;
  clientIp: string;
  method: string;
  host: string;
  path: string;
  protocol: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  service: string | undefined;
  server: string | undefined;
  /** Time to the server's first response byte, last attempt (ms). */
  upstreamFirstByteMs: number | undefined;
  /** Time spent with servers, all attempts (ms). */
  upstreamMs: number | undefined;
  totalMs: number;
  retries: number;
  queueWaitMs: number;
  /** Why Velocity answered itself: rate-limited, denied, banned, circuit-open… */
  decision: string | undefined;
  /** Why a failed try was not retried (absent when it was, or nothing failed). */
  retryDenied?: RetryRefusal | undefined;
  /** Velocity error code when Velocity made the response. */
  errorCode: string | undefined;
  userAgent: string | undefined;
  /** W3C trace id of the request (the client's or a new one) and Velocity's span id for it. */
  traceId?: string;
  spanId?: string;
  /** gRPC calls: `/package.Service/Method` and the grpc-status the client got. */
  grpcMethod?: string;
  grpcStatus?: number;
}

/** Why a failed try was not retried: the retry budget was spent, no tries left, no other server, a streamed body, a non-idempotent request already sent, or past the total timeout. */
export type RetryRefusal = 'budget' | 'attempts' | 'no_server' | 'body_streamed' | 'not_idempotent' | 'total_timeout';

export type RequestObserver = (record: RequestRecord) => void;

/** Fans records out to observers; an observer that throws is reported once and kept. */
export class ObserverList {
  private observers: RequestObserver[] = [];

  add(observer: RequestObserver): () => void {
    this.observers = [...this.observers, observer];
    return () => {
      this.observers = this.observers.filter((o) => o !== observer);
    };
  }

  emit(record: RequestRecord, onError: (err: unknown) => void): void {
    for (const o of this.observers) {
      try {
        o(record);
      } catch (err) {
        onError(err);
      }
    }
  }

  get size(): number {
    return this.observers.length;
  }
}
