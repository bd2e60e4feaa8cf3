import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';

/**
 * An OTLP/HTTP trace receiver for tests: what the services export (http/protobuf, as the chart
 * configures them), decoded with the OpenTelemetry protobuf definitions (the generated code of
 * @opentelemetry/otlp-transformer 0.216, the last release that ships it, installed under the name
 * otlp-transformer-protobufjs beside the SDK's own newer copy).
 */

interface LongLike {
  toString(): string;
}
interface AnyValue {
  stringValue?: string | null;
  intValue?: number | LongLike | null;
  boolValue?: boolean | null;
  doubleValue?: number | null;
}
interface KeyValue {
  key: string;
  value?: AnyValue;
}
interface RawSpan {
  traceId: Uint8Array;
  spanId: Uint8Array;
  parentSpanId?: Uint8Array;
  name: string;
  kind?: number;
  attributes?: KeyValue[];
  links?: { traceId: Uint8Array; spanId: Uint8Array }[];
}
interface ExportTraceServiceRequest {
  resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { scope?: { name?: string }; spans?: RawSpan[] }[] }[];
}
interface Decoder {
  decode(bytes: Uint8Array): ExportTraceServiceRequest;
}

const root = createRequire(import.meta.url)('otlp-transformer-protobufjs/build/src/generated/root.js') as {
  opentelemetry: { proto: { collector: { trace: { v1: { ExportTraceServiceRequest: Decoder } } } } };
};
const REQUEST = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

export interface ReceivedSpan {
  service: string;
  scope: string;
  name: string;
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
  links: { traceId: string; spanId: string }[];
}

const hex = (bytes: Uint8Array | undefined) => Buffer.from(bytes ?? new Uint8Array()).toString('hex');

function attributes(list: readonly KeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  // The decoder leaves the members of the value's oneof that are not set null.
  const set = <T>(member: T | null | undefined): member is T => member !== undefined && member !== null;
  for (const { key, value } of list ?? []) {
    if (set(value?.stringValue)) out[key] = value.stringValue;
    else if (set(value?.intValue)) out[key] = Number(value.intValue.toString());
    else if (set(value?.doubleValue)) out[key] = value.doubleValue;
    else if (set(value?.boolValue)) out[key] = value.boolValue;
  }
  return out;
}

/** Decodes one ExportTraceServiceRequest body into flat spans. */
export function decodeTraceRequest(body: Uint8Array): ReceivedSpan[] {
  const request = REQUEST.decode(body);
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of request.resourceSpans ?? []) {
    const service = String(attributes(resourceSpans.resource?.attributes)['service.name'] ?? '');
    for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
      for (const span of scopeSpans.spans ?? []) {
        spans.push({
          service,
          scope: scopeSpans.scope?.name ?? '',
          name: span.name,
          traceId: hex(span.traceId),
          spanId: hex(span.spanId),
          parentSpanId: hex(span.parentSpanId),
          kind: span.kind ?? 0,
          attributes: attributes(span.attributes),
          links: (span.links ?? []).map((link) => ({ traceId: hex(link.traceId), spanId: hex(link.spanId) })),
        });
      }
    }
  }
  return spans;
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  /** Requests that were not OTLP/protobuf trace exports (a service sending something else). */
  readonly refused: string[] = [];
  private readonly server: Server;

  constructor() {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const type = request.headers['content-type'] ?? '';
        if (request.method !== 'POST' || request.url !== '/v1/traces' || !type.startsWith('application/x-protobuf')) {
          this.refused.push(`${request.method ?? '?'} ${request.url ?? '?'} ${type}`);
          response.writeHead(404).end();
          return;
        }
        this.spans.push(...decodeTraceRequest(Buffer.concat(chunks)));
        // An empty ExportTraceServiceResponse: everything accepted.
        response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
