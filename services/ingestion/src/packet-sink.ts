import { SpanStatusCode, type Span, type Tracer } from '@opentelemetry/api';
import {
  deviceIdField,
  encodePositions,
  FUTURE_TIMESTAMP_REASON,
  liveShardKey,
  shardKey,
  shardOf,
  type DroppedIo,
} from '@pitwall/contract';
import { sampledTraceparent, withSpan } from '@pitwall/platform/tracing';
import type { AvlPacket, AvlRecord } from '@pitwall/teltonika';
import { positionCodec } from './encoding/position-codec.js';
import { codecLabel, type IngestionMetrics, type Transport } from './metrics.js';
import type { Admission, DeadLetter, PositionStore } from './store/position-store.js';

/** What ingestion derives once per device: its shard, the shard's keys, its encoded id field. */
export interface Device {
  imei: string;
  shard: number;
  shardKey: string;
  liveKey: string;
  idField: Buffer;
}

/**
 * What became of a packet. `acknowledge`: every record is durable in the shard (or, for records
 * dated too far ahead, parked in the dead-letter stream): acknowledge the packet. `refused`: the
 * records went to the live-only stream (viewers see them) but are not durable: do not acknowledge,
 * the device keeps them and resends. `reason` says whether backpressure held them back before the
 * cap or the admission script found the shard at its cap.
 */
export type StoreOutcome =
  { result: 'acknowledge'; future: number } | { result: 'refused'; reason: 'backpressure' | 'cap'; backlog: number };

export interface PacketSinkOptions {
  streamKey: string;
  shards: number;
  /** A record whose device time is further ahead of the server clock than this is dead-lettered. */
  maxFutureMs: number;
}

/**
 * From a decoded packet to durable entries: every record becomes a Position offered to the device's
 * shard through the admission script. The packet's span (ingestion.packet) starts the trace of its
 * positions. Resolves with the outcome once Redis replied (acknowledge only on `acknowledge`);
 * rejects with StoreError when Redis failed.
 */
export class PacketSink {
  private readonly devices = new Map<string, Device>();
  private readonly dropped: DroppedIo = { valueTooLarge: 0, entryFull: 0 };

  constructor(
    private readonly positions: PositionStore,
    private readonly options: PacketSinkOptions,
    private readonly metrics: IngestionMetrics,
    private readonly tracer: Tracer,
  ) {}

  /** The device of an IMEI (cached; the cache is bounded and simply restarts when full). */
  device(imei: string): Device {
    let device = this.devices.get(imei);
    if (device === undefined) {
      if (this.devices.size >= 200_000) this.devices.clear();
      const shard = shardOf(imei, this.options.shards);
      device = {
        imei,
        shard,
        shardKey: shardKey(this.options.streamKey, shard),
        liveKey: liveShardKey(this.options.streamKey, shard),
        idField: deviceIdField(imei),
      };
      this.devices.set(imei, device);
    }
    return device;
  }

  /**
   * Stores a packet. `heldBack`: backpressure is engaged on the device's shard, so the records only
   * go live-only (not acknowledged) even when the cap would still admit them.
   */
  async store(transport: Transport, device: Device, packet: AvlPacket, receivedAtMs: number, heldBack = false): Promise<StoreOutcome> {
    const span = this.tracer.startSpan('ingestion.packet', {
      attributes: {
        'pitwall.transport': transport,
        'pitwall.codec': codecLabel(packet.codec),
        'pitwall.records': packet.records.length,
        'pitwall.shard': device.shard,
      },
    });
    try {
      const outcome = await this.storeIn(span, transport, device, packet, receivedAtMs, heldBack);
      span.setAttribute('pitwall.outcome', outcome.result === 'acknowledge' ? 'acknowledge' : outcome.reason);
      return outcome;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      span.end();
    }
  }

  private async storeIn(
    span: Span,
    transport: Transport,
    device: Device,
    packet: AvlPacket,
    receivedAtMs: number,
    heldBack: boolean,
  ): Promise<StoreOutcome> {
    const latest = receivedAtMs + this.options.maxFutureMs;
    let records: readonly AvlRecord[] = packet.records;
    let future: AvlRecord[] | undefined;
    for (const record of packet.records) {
      if (record.timestampMs > latest) {
        future = packet.records.filter((r) => r.timestampMs > latest);
        records = packet.records.filter((r) => r.timestampMs <= latest);
        break;
      }
    }
    const entries = encodePositions(device.idField, receivedAtMs, positionCodec(packet.codec), records, this.dropped);
    this.flushDropped();
    // A sampled packet's positions carry its trace on (writer, gateway); its Redis calls are its children.
    const traceparent = sampledTraceparent(span);
    const admission =
      traceparent === undefined
        ? await this.append(heldBack, device, entries)
        : await withSpan(span, () => this.append(heldBack, device, entries, traceparent));
    if (!admission.admitted) {
      this.metrics.refused(transport, heldBack ? 'backpressure' : 'cap', entries.length);
      return { result: 'refused', reason: heldBack ? 'backpressure' : 'cap', backlog: admission.backlog };
    }
    this.metrics.admitted(transport, entries.length);
    if (future !== undefined) {
      // Acknowledged (the device must not resend them forever) but neither stored nor live.
      const encoded = encodePositions(device.idField, receivedAtMs, positionCodec(packet.codec), future, this.dropped);
      this.flushDropped();
      const letters: DeadLetter[] = encoded.map((position, i) => ({
        reason: FUTURE_TIMESTAMP_REASON,
        error: `device time ${new Date(future[i]?.timestampMs ?? 0).toISOString()} is ${
          (future[i]?.timestampMs ?? 0) - receivedAtMs
        } ms ahead of the server clock`,
        deviceId: device.imei,
        position,
      }));
      await this.positions.deadLetter(letters);
      this.metrics.futureRecords.inc(letters.length);
    }
    this.metrics.stored(transport, packet.codec, packet.records.length);
    return { result: 'acknowledge', future: future?.length ?? 0 };
  }

  private append(heldBack: boolean, device: Device, entries: readonly Buffer[], traceparent?: string): Promise<Admission> {
    return heldBack
      ? this.positions.appendLive(device.shardKey, device.liveKey, entries, traceparent)
      : this.positions.append(device.shardKey, device.liveKey, entries, traceparent);
  }

  private flushDropped(): void {
    if (this.dropped.valueTooLarge > 0) this.metrics.droppedIo.valueTooLarge.inc(this.dropped.valueTooLarge);
    if (this.dropped.entryFull > 0) this.metrics.droppedIo.entryFull.inc(this.dropped.entryFull);
    this.dropped.valueTooLarge = 0;
    this.dropped.entryFull = 0;
  }
}
