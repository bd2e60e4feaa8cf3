import { register } from 'node:module';
import {
  context,
  propagation,
  ROOT_CONTEXT,
  trace,
  TraceFlags,
  type Context,
  type Span,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api';
import type { Env } from './config.js';
import { idempotent, type Service } from './lifecycle.js';

/**
 * OpenTelemetry tracing, configured only by the standard OTEL_* variables. It is off (the API's
 * no-op tracer) unless an exporter is configured: OTEL_TRACES_EXPORTER other than `none`, or an
 * OTLP endpoint. The SDK propagates W3C trace context by default.
 *
 * Auto-instrumentation (http, pg, ioredis) patches those modules as they load, so a service starts
 * tracing before it imports anything else: its main.ts calls startTracing(), then imports the rest
 * (`@pitwall/platform/tracing` loads none of them). This module imports no instrumented module.
 */
export function tracingEnabled(env: Env = process.env): boolean {
  const exporter = env.OTEL_TRACES_EXPORTER?.trim();
  if (exporter !== undefined && exporter !== '') return exporter !== 'none';
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

// Health checks and scrapes are not worth a trace.
const UNTRACED_PATHS = new Set(['/metrics', '/healthz', '/readyz']);

let shutdownSdk: (() => Promise<void>) | undefined;

/** Starts the SDK with the http, pg and ioredis instrumentations when tracing is enabled (once per process). */
export async function startTracing(serviceName: string, env: Env = process.env): Promise<void> {
  if (shutdownSdk !== undefined || !tracingEnabled(env)) return;
  process.env.OTEL_SERVICE_NAME ??= `pitwall-${serviceName}`;
  // The SDK would also push metrics and logs over OTLP unless told not to: metrics are scraped from
  // /metrics and logs go to stdout, so only traces are exported unless these are set explicitly.
  process.env.OTEL_METRICS_EXPORTER ??= 'none';
  process.env.OTEL_LOGS_EXPORTER ??= 'none';
  // The services are ES modules: the loader hook lets the instrumentations patch what they import.
  register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);
  // Loaded only when tracing is on: the SDK is heavy and most local runs do without it.
  const [{ NodeSDK }, { HttpInstrumentation }, { PgInstrumentation }, { IORedisInstrumentation }] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/instrumentation-http'),
    import('@opentelemetry/instrumentation-pg'),
    import('@opentelemetry/instrumentation-ioredis'),
  ]);
  const sdk = new NodeSDK({
    instrumentations: [
      new HttpInstrumentation({ ignoreIncomingRequestHook: (request) => UNTRACED_PATHS.has((request.url ?? '').split('?')[0] ?? '') }),
      new PgInstrumentation(),
      // A blocking XREADGROUP is not worth a span of its own every few seconds: only inside a traced operation.
      new IORedisInstrumentation({ requireParentSpan: true }),
    ],
  });
  sdk.start();
  shutdownSdk = () => sdk.shutdown();
}

/** The process's tracing as a Service: starts the SDK if main did not, and flushes and stops it last. */
export class Tracing implements Service {
  readonly name = 'tracing';

  constructor(
    private readonly serviceName: string,
    private readonly env: Env = process.env,
  ) {}

  get tracer(): Tracer {
    return trace.getTracer(`pitwall-${this.serviceName}`);
  }

  async start(): Promise<void> {
    await startTracing(this.serviceName, this.env);
  }

  close = idempotent(async () => {
    const shutdown = shutdownSdk;
    shutdownSdk = undefined;
    await shutdown?.();
  });
}

/**
 * W3C traceparent of a span that is sampled, for the stream entry's `tp` field; undefined otherwise
 * (an unsampled position carries nothing).
 */
export function sampledTraceparent(span: Span): string | undefined {
  const { traceId, spanId, traceFlags } = span.spanContext();
  if ((traceFlags & TraceFlags.SAMPLED) === 0) return undefined;
  return `00-${traceId}-${spanId}-01`;
}

/** The context a traceparent from a stream entry continues (the root context when it is not valid or tracing is off). */
export function traceparentContext(traceparent: string): Context {
  return propagation.extract(ROOT_CONTEXT, { traceparent });
}

/** The span context of a traceparent, for a span link; undefined when it is not valid. */
export function traceparentSpanContext(traceparent: string): SpanContext | undefined {
  return trace.getSpanContext(traceparentContext(traceparent));
}

/** Runs `fn` with `span` as the active span (so instrumented calls inside become its children). */
export function withSpan<T>(span: Span, fn: () => T): T {
  return context.with(trace.setSpan(context.active(), span), fn);
}
