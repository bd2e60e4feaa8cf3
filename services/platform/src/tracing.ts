import { trace, type Tracer } from '@opentelemetry/api';
import type { Env } from './config.js';
import { idempotent, type Service } from './lifecycle.js';

/**
 * OpenTelemetry tracing, configured only by the standard OTEL_* variables. It is off (the API's
 * no-op tracer) unless an exporter is configured: OTEL_TRACES_EXPORTER other than `none`, or an
 * OTLP endpoint. The SDK propagates W3C trace context by default.
 */
export function tracingEnabled(env: Env = process.env): boolean {
  const exporter = env.OTEL_TRACES_EXPORTER?.trim();
  if (exporter !== undefined && exporter !== '') return exporter !== 'none';
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

export class Tracing implements Service {
  readonly name = 'tracing';
  private shutdownSdk: (() => Promise<void>) | undefined;

  constructor(
    private readonly serviceName: string,
    private readonly env: Env = process.env,
  ) {}

  get tracer(): Tracer {
    return trace.getTracer(`pitwall-${this.serviceName}`);
  }

  async start(): Promise<void> {
    if (!tracingEnabled(this.env)) return;
    process.env.OTEL_SERVICE_NAME ??= `pitwall-${this.serviceName}`;
    // Loaded only when tracing is on: the SDK is heavy and most local runs do without it.
    const { NodeSDK } = await import('@opentelemetry/sdk-node');
    const sdk = new NodeSDK();
    sdk.start();
    this.shutdownSdk = () => sdk.shutdown();
  }

  close = idempotent(async () => {
    await this.shutdownSdk?.();
  });
}
