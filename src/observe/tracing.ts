/**
 * Request tracing: every request gets a trace (the client's, or a new one), a
 * span of its own and one span per attempt to a server; the server is sent a
 * `traceparent` naming the attempt span as its parent. Sampling is parent-based:
 * a client's sampled flag is followed, new traces are sampled at `sample_ratio`.
 * Spans are built and exported only when sampled and an OTLP endpoint is set;
 * otherwise a request pays for two random ids and a header.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { TracingConfig } from '../config/schema/observe.ts';
import type { RequestRecord } from './events.ts';
import type { Logger } from './logger.ts';
import { type AttributeValue, type ExportCounters, OtlpExporter } from './otlp.ts';
import {
  cleanTracestate,
  formatTraceparent,
  NEW_TRACE_ATTEMPT_SPAN,
  NEW_TRACE_REQUEST_SPAN,
  NEW_TRACE_TRACE_ID,
  newSpanId,
  newTraceRecord,
  parseTraceparent,
} from './trace-context.ts';

const now = () => performance.timeOrigin + performance.now();

/** One try to one server, as a child of the request's span. */
export interface AttemptSpan {
  readonly spanId: string;
  readonly number: number;
  readonly startMs: number;
}

/** What an attempt's span records when it ends. */
export interface AttemptResult {
  server: string;
  status?: number;
  errorCode?: string;
  grpcStatus?: number;
  firstByteMs?: number;
}

export class RequestTrace {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly sampled: boolean;
  readonly tracestate: string | undefined;
  /** When the request arrived, on performance.now()'s clock: made epoch ms only for a span exported. */
  private readonly started: number;
  private attempts = 0;
  private readonly tracer: Tracer;
  /**
   * A new trace's record (trace-context.ts's newTraceRecord): its ids, and its first attempt's span id and
   * traceparent, are slices of it. Undefined when the client's traceparent was continued.
   */
  private readonly fresh: string | undefined;

  /** `started`: when the request arrived (performance.now()), read once by the request path. */
  constructor(tracer: Tracer, headers: IncomingHttpHeaders, started: number) {
    this.tracer = tracer;
    this.started = started;
    const parent = parseTraceparent(headers.traceparent);
    if (parent) {
      this.fresh = undefined;
      this.traceId = parent.traceId;
      this.spanId = newSpanId();
      this.parentSpanId = parent.spanId;
      this.sampled = parent.sampled;
      this.tracestate = cleanTracestate(headers.tracestate);
    } else {
      const fresh = newTraceRecord();
      this.fresh = fresh;
      this.traceId = fresh.slice(NEW_TRACE_TRACE_ID, NEW_TRACE_TRACE_ID + 32);
      this.spanId = fresh.slice(NEW_TRACE_REQUEST_SPAN, NEW_TRACE_REQUEST_SPAN + 16);
      this.parentSpanId = undefined;
      this.sampled = tracer.sampleNew();
      this.tracestate = undefined;
    }
  }

  /** Whether spans are built and exported: ask before building an AttemptResult for endAttempt. */
  get recording(): boolean {
    return this.sampled && this.tracer.exporter !== undefined;
  }

  startAttempt(): AttemptSpan {
    const number = ++this.attempts;
    const fresh = this.fresh;
    const spanId = number === 1 && fresh !== undefined ? fresh.slice(NEW_TRACE_ATTEMPT_SPAN, NEW_TRACE_ATTEMPT_SPAN + 16) : newSpanId();
    return { spanId, number, startMs: this.recording ? now() : 0 };
  }

  /** The `traceparent` sent to the server for an attempt: the attempt span is the server's parent. */
  traceparent(attempt: AttemptSpan): string {
    const fresh = this.fresh;
    // A new trace's first attempt, sampled: the record's start is that traceparent already.
    if (attempt.number === 1 && fresh !== undefined && this.sampled) return fresh.slice(0, NEW_TRACE_REQUEST_SPAN);
    return formatTraceparent(this.traceId, attempt.spanId, this.sampled);
  }

  endAttempt(attempt: AttemptSpan, result: AttemptResult, method: string): void {
    const exporter = this.tracer.exporter;
    if (!this.sampled || !exporter) return;
    const attributes: [string, AttributeValue][] = [
      ['velocity.attempt', attempt.number],
      ['velocity.server', result.server],
    ];
    if (result.status !== undefined) attributes.push(['http.response.status_code', result.status]);
    if (result.grpcStatus !== undefined) attributes.push(['rpc.grpc.status_code', result.grpcStatus]);
    if (result.errorCode) attributes.push(['error.type', result.errorCode]);
    if (result.firstByteMs !== undefined) attributes.push(['velocity.upstream_first_byte_ms', result.firstByteMs]);
    exporter.add({
      traceId: this.traceId,
      spanId: attempt.spanId,
      parentSpanId: this.spanId,
      traceState: this.tracestate,
      name: `${method} attempt`,
      kind: 3,
      startMs: attempt.startMs,
      endMs: now(),
      attributes,
      error: result.errorCode ?? (result.grpcStatus ? `grpc-status ${result.grpcStatus}` : undefined),
    });
  }

  /** Ends the request span with what the access-log record says. */
  end(record: RequestRecord): void {
    const exporter = this.tracer.exporter;
    if (!this.sampled || !exporter) return;
    const attributes: [string, AttributeValue][] = [
      ['http.request.method', record.method],
      ['url.path', record.path],
      ['server.address', record.host],
      ['client.address', record.clientIp],
      ['network.protocol.name', record.protocol],
      ['http.response.status_code', record.status],
      ['velocity.request_id', record.requestId],
      ['velocity.retries', record.retries],
      ['velocity.queue_wait_ms', record.queueWaitMs],
      ['velocity.total_ms', record.totalMs],
    ];
    if (record.service) attributes.push(['velocity.service', record.service]);
    if (record.server) attributes.push(['velocity.server', record.server]);
    if (record.errorCode) attributes.push(['error.type', record.errorCode]);
    if (record.upstreamMs !== undefined) attributes.push(['velocity.upstream_ms', record.upstreamMs]);
    if (record.grpcMethod) attributes.push(['rpc.system', 'grpc'], ['rpc.method', record.grpcMethod]);
    if (record.grpcStatus !== undefined) attributes.push(['rpc.grpc.status_code', record.grpcStatus]);
    const failed = record.errorCode !== undefined || record.status >= 500;
    exporter.add({
      traceId: this.traceId,
      spanId: this.spanId,
      parentSpanId: this.parentSpanId,
      traceState: this.tracestate,
      name: record.service ? `${record.method} ${record.service}` : record.method,
      kind: 2,
      startMs: performance.timeOrigin + this.started,
      endMs: now(),
      attributes,
      error: failed ? (record.errorCode ?? `status ${record.status}`) : undefined,
    });
  }
}

/** One per thread: the sampling rule and the exporter of the current config. */
export class Tracer {
  exporter: OtlpExporter | undefined;
  propagate = true;
  private ratio = 1;
  private config: TracingConfig | undefined;
  private readonly log: Logger;
  private readonly counters: ExportCounters;

  constructor(log: Logger, counters: ExportCounters) {
    this.log = log;
    this.counters = counters;
  }

  /** Takes a (re)loaded config; the exporter is replaced only when its settings changed. */
  configure(config: TracingConfig): void {
    if (this.config && JSON.stringify(this.config) === JSON.stringify(config)) return;
    this.config = config;
    this.propagate = config.propagate;
    this.ratio = config.sample_ratio;
    const old = this.exporter;
    this.exporter = config.otlp ? new OtlpExporter(config.otlp, config.service_name, this.log, this.counters) : undefined;
    void old?.close();
  }

  sampleNew(): boolean {
    return this.ratio >= 1 || (this.ratio > 0 && Math.random() < this.ratio);
  }

  start(headers: IncomingHttpHeaders, started = performance.now()): RequestTrace {
    return new RequestTrace(this, headers, started);
  }

  async close(): Promise<void> {
    await this.exporter?.close();
  }
}
