import { SpanStatusCode, type Tracer } from '@opentelemetry/api';
import { shardKey, shardOf } from '@pitwall/contract';
import { sampledTraceparent, withSpan } from '@pitwall/platform/tracing';
import type { AvlPacket } from '@pitwall/teltonika';
import { deviceIdField, encodePositions } from './encoding/position-writer.js';
import { codecLabel, type IngestionMetrics, type Transport } from './metrics.js';
import type { PositionStore } from './store/position-store.js';

/** What ingestion derives once per device: its shard, the shard's key, its encoded id field. */
export interface Device {
  imei: string;
  shard: number;
  shardKey: string;
  idField: Buffer;
}

/**
 * From a decoded packet to durable entries: every record becomes a Position appended to the
 * device's shard. The packet's span (ingestion.packet) starts the trace of its positions. Resolves when Redis confirmed all of them (then, and only then, the caller
 * acknowledges); rejects with StoreError otherwise.
 */
export class PacketSink {
  private readonly devices = new Map<string, Device>();

  constructor(
    private readonly positions: PositionStore,
    private readonly streamKey: string,
    private readonly shards: number,
    private readonly metrics: IngestionMetrics,
    private readonly tracer: Tracer,
  ) {}

  /** The device of an IMEI (cached; the cache is bounded and simply restarts when full). */
  device(imei: string): Device {
    let device = this.devices.get(imei);
    if (device === undefined) {
      if (this.devices.size >= 200_000) this.devices.clear();
      const shard = shardOf(imei, this.shards);
      device = { imei, shard, shardKey: shardKey(this.streamKey, shard), idField: deviceIdField(imei) };
      this.devices.set(imei, device);
    }
    return device;
  }

  async store(transport: Transport, device: Device, packet: AvlPacket, receivedAtMs: number): Promise<void> {
    const span = this.tracer.startSpan('ingestion.packet', {
      attributes: {
        'pitwall.transport': transport,
        'pitwall.codec': codecLabel(packet.codec),
        'pitwall.records': packet.records.length,
        'pitwall.shard': device.shard,
      },
    });
    try {
      const entries = encodePositions(device.idField, receivedAtMs, packet.codec, packet.records);
      // A sampled packet's positions carry its trace on (writer, gateway); its XADDs are its children.
      const traceparent = sampledTraceparent(span);
      if (traceparent === undefined) await this.positions.append(device.shardKey, entries);
      else await withSpan(span, () => this.positions.append(device.shardKey, entries, traceparent));
      this.metrics.stored(transport, packet.codec, packet.records.length);
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      span.end();
    }
  }
}
