import { context, ROOT_CONTEXT, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span } from '@opentelemetry/api';
import { traceparentContext, traceparentSpanContext } from '@pitwall/platform/tracing';

const tracer = trace.getTracer('pitwall-writer');

/** Sampled positions of one batch that become links of its span (the rest are not worth the memory). */
export const MAX_TRACED_POSITIONS = 64;

/**
 * The trace of a batch that holds sampled positions (entries with field `tp`): `writer.batch`, with
 * `writer.read`, `writer.copy`, `writer.commit` and `writer.xack` below it. Its parent is the first
 * sampled position's packet, so that position's trace runs from the device's packet through the
 * commit to the acknowledgement; the batch's other sampled positions are its links (a batch serves
 * many traces). Batches without a sampled position are not traced.
 */
export class BatchTrace {
  private readonly context: Context;

  private constructor(readonly span: Span) {
    this.context = trace.setSpan(ROOT_CONTEXT, span);
  }

  /** Undefined when no position of the batch is sampled (or tracing is off). */
  static start(
    traceparents: readonly string[],
    readStartedAtMs: number,
    readEndedAtMs: number,
    attributes: Attributes,
  ): BatchTrace | undefined {
    const [first, ...others] = traceparents;
    if (first === undefined) return undefined;
    const links: Link[] = [];
    for (const traceparent of others) {
      const linked = traceparentSpanContext(traceparent);
      if (linked !== undefined) links.push({ context: linked });
    }
    const span = tracer.startSpan(
      'writer.batch',
      { startTime: readStartedAtMs, links, attributes: { ...attributes, 'pitwall.traced_positions': traceparents.length } },
      traceparentContext(first),
    );
    if (!span.isRecording()) return undefined;
    const batch = new BatchTrace(span);
    batch.record('writer.read', readStartedAtMs, readEndedAtMs);
    return batch;
  }

  /** A finished step of the batch (its times measured around it). */
  record(name: string, startMs: number, endMs: number, attributes?: Attributes): void {
    tracer.startSpan(name, { startTime: startMs, attributes }, this.context).end(endMs);
  }

  /** Runs `work` with the batch as the active span: the store's COPY and commit spans, and pg's, go below it. */
  run<T>(work: () => Promise<T>): Promise<T> {
    return context.with(this.context, work);
  }

  end(): void {
    this.span.end();
  }
}

/** A span for `work` below the active span when that one is recording (a traced batch); otherwise just `work`. */
export async function step<T>(name: string, work: () => Promise<T>): Promise<T> {
  const parent = trace.getSpan(context.active());
  if (parent === undefined || !parent.isRecording()) return work();
  return tracer.startActiveSpan(name, async (span) => {
    try {
      return await work();
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      span.end();
    }
  });
}
