/**
 * A local OTLP/HTTP endpoint for the tracing tests: it takes ExportTraceServiceRequest
 * bodies and decodes them with the OpenTelemetry protobuf definitions (the generated
 * code shipped in @opentelemetry/otlp-proto-exporter-base), as a collector would.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import otlpRoot from '@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js';

export interface DecodedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, string | number | boolean>;
  status: { code: number; message: string };
  resource: Record<string, string | number | boolean>;
}

// biome-ignore lint/suspicious/noExplicitAny: protobufjs static code is untyped here
const ExportTraceServiceRequest = (otlpRoot as any).opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

const hex = (b: Uint8Array | undefined) => Buffer.from(b ?? []).toString('hex');

// biome-ignore lint/suspicious/noExplicitAny: an AnyValue message
function anyValue(v: any): string | number | boolean {
  if (v.stringValue !== undefined && v.stringValue !== null && v.stringValue !== '') return v.stringValue;
  if (v.intValue !== undefined && v.intValue !== null) return Number(v.intValue);
  if (v.doubleValue !== undefined && v.doubleValue !== null) return v.doubleValue;
  if (v.boolValue !== undefined && v.boolValue !== null) return v.boolValue;
  return '';
}

// biome-ignore lint/suspicious/noExplicitAny: KeyValue messages
const attributes = (list: any[] | undefined) => Object.fromEntries((list ?? []).map((kv) => [kv.key, anyValue(kv.value ?? {})]));

/** Decodes one export request body into flat spans. */
export function decodeExport(body: Buffer): DecodedSpan[] {
  const message = ExportTraceServiceRequest.decode(body);
  const object = ExportTraceServiceRequest.toObject(message, { longs: String, defaults: false, oneofs: true });
  const out: DecodedSpan[] = [];
  for (const rs of object.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          parentSpanId: hex(s.parentSpanId),
          traceState: s.traceState ?? '',
          name: s.name,
          kind: s.kind,
          startNs: BigInt(s.startTimeUnixNano),
          endNs: BigInt(s.endTimeUnixNano),
          attributes: attributes(s.attributes),
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
          resource,
        });
      }
    }
  }
  return out;
}

export interface OtlpReceiver {
  endpoint: string;
  spans: DecodedSpan[];
  requests: number;
  contentTypes: string[];
}

export async function startOtlpReceiver(t: { after(fn: () => unknown): void }): Promise<OtlpReceiver> {
  const receiver: OtlpReceiver = { endpoint: '', spans: [], requests: 0, contentTypes: [] };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      receiver.requests++;
      receiver.contentTypes.push(String(req.headers['content-type']));
      receiver.spans.push(...decodeExport(Buffer.concat(chunks)));
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return receiver;
}
