import { Counter, Gauge, Histogram, LATENCY_BUCKETS_SECONDS, type Registry } from '@pitwall/platform';
import { CODEC_16, CODEC_8, FRAME_REJECT_REASONS, type AvlCodecId, type FrameRejectReason } from '@pitwall/teltonika';

export type Transport = 'tcp' | 'udp';

/** Why a TCP connection was refused or closed by the server (a label value). */
export type CloseReason =
  | 'max_connections'
  | 'max_connections_per_address'
  | 'imei_rejected'
  | 'bad_handshake'
  | 'handshake_timeout'
  | 'frame_timeout'
  | 'bad_frames'
  | 'idle'
  | 'store_failed'
  | 'slow_reader'
  | 'shutdown';

/** Why a decoded packet was not stored (a label value); the device resends it. */
export type DeferReason = 'backpressure' | 'cap' | 'overloaded' | 'imei_rejected' | 'store_failed';
const DEFER_REASONS: readonly DeferReason[] = ['backpressure', 'cap', 'overloaded', 'imei_rejected', 'store_failed'];

/** Why records went to the live-only stream instead of the shard (a label value). */
export type RefuseReason = 'backpressure' | 'cap';

const CODEC_LABELS = ['8', '8e', '16'] as const;
type CodecLabel = (typeof CODEC_LABELS)[number];

export function codecLabel(codec: AvlCodecId): CodecLabel {
  return codec === CODEC_8 ? '8' : codec === CODEC_16 ? '16' : '8e';
}

type Inc = { inc(value?: number): void };

/**
 * Every metric of the ingestion service, `pitwall_ingestion_*`. Hot-path label sets are bound once
 * here (prom-client hashes labels on every `labels()` call).
 */
export class IngestionMetrics {
  readonly tcpConnections: Gauge;
  readonly connectionsClosed: Counter<'reason'>;
  readonly packets: Counter<'transport' | 'codec'>;
  readonly records: Counter<'transport' | 'codec'>;
  readonly rejectedFrames: Counter<'transport' | 'reason'>;
  readonly deferredPackets: Counter<'transport' | 'reason'>;
  readonly commandResponses: Counter;
  readonly keepalives: Counter;
  readonly xaddSeconds: Histogram;
  readonly admittedRecords: Counter<'transport'>;
  readonly refusedRecords: Counter<'transport' | 'reason'>;
  readonly futureRecords: Counter;
  readonly droppedIoElements: Counter<'reason'>;
  readonly droppedIo: { valueTooLarge: Inc; entryFull: Inc };
  readonly logLinesSuppressed: Counter;
  /** Bytes held in incomplete frames and handshakes over every TCP connection (read at scrape time). */
  readonly tcpBufferedBytes: Gauge;
  private bufferedBytesSource: () => number = () => 0;
  readonly ackSeconds: Histogram<'transport'>;
  readonly backpressure: Gauge<'shard'>;
  readonly backlog: Gauge<'shard'>;
  /** ackSeconds bound per transport. */
  readonly ack: Record<Transport, { observe(value: number): void }>;
  private readonly bound = new Map<string, Inc>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.tcpConnections = new Gauge({ name: 'pitwall_ingestion_tcp_connections', help: 'Open device TCP connections.', registers });
    this.connectionsClosed = new Counter({
      name: 'pitwall_ingestion_connections_closed_total',
      help: 'TCP connections the server refused or closed, by reason (device-initiated closes are not counted).',
      labelNames: ['reason'],
      registers,
    });
    this.packets = new Counter({
      name: 'pitwall_ingestion_packets_total',
      help: 'AVL packets stored and acknowledged, by transport and codec.',
      labelNames: ['transport', 'codec'],
      registers,
    });
    this.records = new Counter({
      name: 'pitwall_ingestion_records_total',
      help: 'AVL records (positions) stored and acknowledged, by transport and codec.',
      labelNames: ['transport', 'codec'],
      registers,
    });
    this.rejectedFrames = new Counter({
      name: 'pitwall_ingestion_rejected_frames_total',
      help: 'Frames rejected by the decoder (never acknowledged), by transport and reason.',
      labelNames: ['transport', 'reason'],
      registers,
    });
    this.deferredPackets = new Counter({
      name: 'pitwall_ingestion_deferred_packets_total',
      help: 'Valid packets not acknowledged (left on the device to resend), by transport and reason.',
      labelNames: ['transport', 'reason'],
      registers,
    });
    this.commandResponses = new Counter({
      name: 'pitwall_ingestion_command_responses_total',
      help: 'Codec 12 command responses received (logged, not stored).',
      registers,
    });
    this.keepalives = new Counter({ name: 'pitwall_ingestion_keepalives_total', help: 'TCP keepalive bytes (0xFF) received.', registers });
    this.xaddSeconds = new Histogram({
      name: 'pitwall_ingestion_xadd_duration_seconds',
      help: 'Round trip of one admission script call (EVALSHA): the packets one event-loop turn offers a shard.',
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    this.admittedRecords = new Counter({
      name: 'pitwall_ingestion_admitted_records_total',
      help: 'Records the admission script appended to their shard stream (durable; acknowledged unless the connection closed meanwhile).',
      labelNames: ['transport'],
      registers,
    });
    this.refusedRecords = new Counter({
      name: 'pitwall_ingestion_refused_records_total',
      help: 'Records appended to the live-only stream and not acknowledged, by why: backpressure engaged, or the shard at STREAM_MAXLEN (cap).',
      labelNames: ['transport', 'reason'],
      registers,
    });
    this.futureRecords = new Counter({
      name: 'pitwall_ingestion_future_records_total',
      help: 'Records dated more than INGESTION_MAX_FUTURE_MS ahead of the server clock: acknowledged, dead-lettered (future_timestamp), not stored.',
      registers,
    });
    this.droppedIoElements = new Counter({
      name: 'pitwall_ingestion_dropped_io_elements_total',
      help: 'IO elements left out of stored positions (the position is kept): value_too_large (NX value over 256 bytes), entry_full (entry would exceed 4096 bytes).',
      labelNames: ['reason'],
      registers,
    });
    this.droppedIo = {
      valueTooLarge: this.droppedIoElements.labels('value_too_large'),
      entryFull: this.droppedIoElements.labels('entry_full'),
    };
    this.droppedIo.valueTooLarge.inc(0);
    this.droppedIo.entryFull.inc(0);
    this.logLinesSuppressed = new Counter({
      name: 'pitwall_ingestion_log_lines_suppressed_total',
      help: 'Per-device log lines the log limiter suppressed (each window ends with one line counting them).',
      registers,
    });
    this.ackSeconds = new Histogram({
      name: 'pitwall_ingestion_ack_duration_seconds',
      help: 'From a packet fully received to its acknowledgement written, by transport.',
      labelNames: ['transport'],
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    this.backpressure = new Gauge({
      name: 'pitwall_ingestion_backpressure',
      help: '1 while a shard is over the backlog limit (devices are not acknowledged nor read), else 0.',
      labelNames: ['shard'],
      registers,
    });
    this.backlog = new Gauge({
      name: 'pitwall_ingestion_stream_backlog_entries',
      help: 'Entries of a shard the processor group has not yet acknowledged (lag + pending).',
      labelNames: ['shard'],
      registers,
    });
    const bufferedBytes = (): number => this.bufferedBytesSource();
    this.tcpBufferedBytes = new Gauge({
      name: 'pitwall_ingestion_tcp_buffered_bytes',
      help: 'Bytes of incomplete frames and handshakes held over every TCP connection (each at most INGESTION_MAX_FRAME_BYTES + 12).',
      registers,
      collect() {
        this.set(bufferedBytes());
      },
    });
    this.ack = { tcp: this.ackSeconds.labels('tcp'), udp: this.ackSeconds.labels('udp') };
    // Every series exists from the start, so rates and alerts work before the first event.
    for (const transport of ['tcp', 'udp'] as const) {
      for (const codec of CODEC_LABELS) {
        this.packets.labels(transport, codec).inc(0);
        this.records.labels(transport, codec).inc(0);
      }
      for (const reason of FRAME_REJECT_REASONS) this.rejectedFrames.labels(transport, reason).inc(0);
      for (const reason of DEFER_REASONS) this.deferredPackets.labels(transport, reason).inc(0);
      this.admittedRecords.labels(transport).inc(0);
      for (const reason of ['backpressure', 'cap'] as const) this.refusedRecords.labels(transport, reason).inc(0);
    }
  }

  private counterChild(counter: Counter<string>, key: string, labels: string[]): Inc {
    let child = this.bound.get(key);
    if (child === undefined) {
      child = counter.labels(...labels);
      this.bound.set(key, child);
    }
    return child;
  }

  stored(transport: Transport, codec: AvlCodecId, records: number): void {
    const label = codecLabel(codec);
    this.counterChild(this.packets, `p:${transport}:${label}`, [transport, label]).inc();
    this.counterChild(this.records, `r:${transport}:${label}`, [transport, label]).inc(records);
  }

  /** Where tcpBufferedBytes reads its value. */
  measureBufferedBytes(source: () => number): void {
    this.bufferedBytesSource = source;
  }

  admitted(transport: Transport, records: number): void {
    this.counterChild(this.admittedRecords, `a:${transport}`, [transport]).inc(records);
  }

  /** A packet whose records went live-only, not acknowledged. */
  refused(transport: Transport, reason: RefuseReason, records: number): void {
    this.counterChild(this.refusedRecords, `f:${transport}:${reason}`, [transport, reason]).inc(records);
    this.deferred(transport, reason);
  }

  rejected(transport: Transport, reason: FrameRejectReason): void {
    this.counterChild(this.rejectedFrames, `x:${transport}:${reason}`, [transport, reason]).inc();
  }

  deferred(transport: Transport, reason: DeferReason): void {
    this.counterChild(this.deferredPackets, `d:${transport}:${reason}`, [transport, reason]).inc();
  }

  closed(reason: CloseReason): void {
    this.counterChild(this.connectionsClosed, `c:${reason}`, [reason]).inc();
  }
}
