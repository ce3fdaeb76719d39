/**
 * OTLP/HTTP span export: spans encoded as an ExportTraceServiceRequest
 * (opentelemetry/proto/collector/trace/v1) in protobuf, POSTed to a collector's
 * /v1/traces in batches. The queue is bounded; when it is full or the collector
 * fails, spans are dropped and counted. Requests never wait for it.
 *
 * The encoder is ours (about a hundred lines): the OpenTelemetry SDK's span
 * objects, processors and transformer cost far more per request than a
 * balancer's hot path can give; the wire format is the standard one, so any
 * collector accepts it (the tests decode it with the OpenTelemetry definitions).
 */
import { Buffer } from 'node:buffer';
import type { TracingConfig } from '../config/schema/observe.ts';
import { undiciClient } from '../optional-module.ts';
import type { Logger } from './logger.ts';

export type AttributeValue = string | number | boolean;

/** A finished span, as the exporter takes it. */
export interface FinishedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  traceState: string | undefined;
  name: string;
  /** 1 internal, 2 server, 3 client. */
  kind: 1 | 2 | 3;
  /** Epoch milliseconds (fractional). */
  startMs: number;
  endMs: number;
  attributes: [string, AttributeValue][];
  /** Sets the OTLP status to ERROR with this message. */
  error: string | undefined;
}

/** A protobuf writer: just the wire types OTLP spans use. */
class ProtoWriter {
  private buf: Buffer;
  private at = 0;

  /** Nested messages start small (most are a few bytes) and grow by doubling. */
  constructor(capacity = 64) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  private raw(n: number): void {
    this.room(10);
    let v = n;
    while (v > 127) {
      this.buf[this.at++] = (v & 127) | 128;
      v = Math.floor(v / 128);
    }
    this.buf[this.at++] = v;
  }

  private tag(field: number, wire: number): void {
    this.raw(field * 8 + wire);
  }

  bytes(field: number, data: Uint8Array): void {
    this.tag(field, 2);
    this.raw(data.length);
    this.room(data.length);
    this.buf.set(data, this.at);
    this.at += data.length;
  }

  string(field: number, s: string): void {
    this.bytes(field, Buffer.from(s, 'utf8'));
  }

  hex(field: number, id: string): void {
    this.bytes(field, Buffer.from(id, 'hex'));
  }

  varint(field: number, n: number): void {
    this.tag(field, 0);
    this.raw(n);
  }

  /** A signed int64 as protobuf writes it (two's complement, 10 bytes when negative). */
  int64(field: number, n: number): void {
    this.tag(field, 0);
    let v = BigInt.asUintN(64, BigInt(Math.trunc(n)));
    this.room(10);
    while (v > 127n) {
      this.buf[this.at++] = Number(v & 127n) | 128;
      v >>= 7n;
    }
    this.buf[this.at++] = Number(v);
  }

  fixed64(field: number, n: bigint): void {
    this.tag(field, 1);
    this.room(8);
    this.buf.writeBigUInt64LE(n, this.at);
    this.at += 8;
  }

  double(field: number, n: number): void {
    this.tag(field, 1);
    this.room(8);
    this.buf.writeDoubleLE(n, this.at);
    this.at += 8;
  }

  message(field: number, write: (w: ProtoWriter) => void): void {
    const inner = new ProtoWriter();
    write(inner);
    this.bytes(field, inner.finish());
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.at);
  }
}

function keyValue(w: ProtoWriter, field: number, key: string, value: AttributeValue): void {
  w.message(field, (kv) => {
    kv.string(1, key);
    kv.message(2, (any) => {
      if (typeof value === 'string') any.string(1, value);
      else if (typeof value === 'boolean') any.varint(2, value ? 1 : 0);
      else if (Number.isInteger(value)) any.int64(3, value);
      else any.double(4, value);
    });
  });
}

const nanos = (ms: number) => BigInt(Math.round(ms * 1000)) * 1000n;

/** Encodes spans as one ExportTraceServiceRequest. */
export function encodeSpans(spans: readonly FinishedSpan[], resource: [string, AttributeValue][], scope: { name: string; version: string }): Buffer {
  const w = new ProtoWriter(spans.length * 256);
  w.message(1, (rs) => {
    rs.message(1, (r) => {
      for (const [k, v] of resource) keyValue(r, 1, k, v);
    });
    rs.message(2, (ss) => {
      ss.message(1, (s) => {
        s.string(1, scope.name);
        s.string(2, scope.version);
      });
      for (const span of spans) {
        ss.message(2, (s) => {
          s.hex(1, span.traceId);
          s.hex(2, span.spanId);
          if (span.traceState) s.string(3, span.traceState);
          if (span.parentSpanId) s.hex(4, span.parentSpanId);
          s.string(5, span.name);
          s.varint(6, span.kind);
          s.fixed64(7, nanos(span.startMs));
          s.fixed64(8, nanos(span.endMs));
          for (const [k, v] of span.attributes) keyValue(s, 9, k, v);
          s.message(15, (st) => {
            if (span.error) st.string(2, span.error);
            st.varint(3, span.error ? 2 : 0);
          });
        });
      }
    });
  });
  return w.finish();
}

export interface ExportCounters {
  exported(n: number): void;
  dropped(n: number): void;
}

type OtlpConfig = NonNullable<TracingConfig['otlp']>;

/** Batches spans to an OTLP/HTTP endpoint; one export in flight at a time. */
export class OtlpExporter {
  private queue: FinishedSpan[] = [];
  private sending = false;
  private readonly timer: NodeJS.Timeout;
  private lastWarn = 0;
  readonly config: OtlpConfig;
  private readonly resource: [string, AttributeValue][];
  private readonly log: Logger;
  private readonly counters: ExportCounters;
  /** The HTTP client, loaded when a config first exports traces. */
  private readonly http = undiciClient();

  constructor(config: OtlpConfig, serviceName: string, log: Logger, counters: ExportCounters) {
    this.config = config;
    this.log = log;
    this.counters = counters;
    this.resource = [
      ['service.name', serviceName],
      ['telemetry.sdk.name', 'velocity'],
      ['telemetry.sdk.language', 'nodejs'],
    ];
    this.timer = setInterval(() => void this.flush(), config.flush_interval);
    this.timer.unref();
  }

  /** Queues a span; past queue_size it is dropped and counted. Never blocks. */
  add(span: FinishedSpan): void {
    if (this.queue.length >= this.config.queue_size) {
      this.counters.dropped(1);
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.config.batch_size && !this.sending) void this.flush();
  }

  async flush(): Promise<void> {
    if (this.sending || this.queue.length === 0) return;
    this.sending = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.config.batch_size);
        await this.send(batch);
        if (this.queue.length < this.config.batch_size) break;
      }
    } finally {
      this.sending = false;
    }
  }

  private async send(batch: FinishedSpan[]): Promise<void> {
    try {
      const body = encodeSpans(batch, this.resource, { name: 'velocity', version: '1' });
      const res = await this.http.request(this.config.endpoint, {
        method: 'POST',
        headers: { ...this.config.headers, 'content-type': 'application/x-protobuf' },
        body,
        signal: AbortSignal.timeout(this.config.timeout),
      });
      await res.body.dump();
      if (res.statusCode >= 300) throw new Error(`collector answered ${res.statusCode}`);
      this.counters.exported(batch.length);
    } catch (err) {
      this.counters.dropped(batch.length);
      const now = Date.now();
      if (now - this.lastWarn > 10_000) {
        this.lastWarn = now;
        this.log.warn({ endpoint: this.config.endpoint, err: (err as Error).message, spans: batch.length }, 'OTLP export failed; spans dropped');
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
