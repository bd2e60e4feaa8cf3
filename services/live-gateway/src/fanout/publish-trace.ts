import { trace } from '@opentelemetry/api';
import { traceparentContext } from '@pitwall/platform/tracing';
import type { LivePosition } from '../protocol/position-json.js';

const tracer = trace.getTracer('pitwall-live-gateway');

/** A sampled position waiting in a frame. */
export interface TracedPosition {
  traceparent: string;
  deviceId: string;
  /** When the gateway read it (ms). */
  readAtMs: number;
}

export function tracedPosition(position: LivePosition): TracedPosition {
  return { traceparent: position.traceparent ?? '', deviceId: position.deviceId, readAtMs: Date.now() };
}

/**
 * The gateway's step in a sampled position's trace: `live-gateway.publish`, from its read to the
 * publish of the frame that carried it to the event's viewers, a child of the device's packet.
 */
export function tracePublished(traced: readonly TracedPosition[], eventId: number, recipients: number): void {
  const publishedAtMs = Date.now();
  for (const position of traced) {
    tracer
      .startSpan(
        'live-gateway.publish',
        {
          startTime: position.readAtMs,
          attributes: { 'pitwall.device_id': position.deviceId, 'pitwall.event_id': eventId, 'pitwall.recipients': recipients },
        },
        traceparentContext(position.traceparent),
      )
      .end(publishedAtMs);
  }
}
