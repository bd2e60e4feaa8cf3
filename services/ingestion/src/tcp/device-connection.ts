import type { Socket } from 'node:net';
import { isImei } from '@pitwall/contract';
import type { Logger } from '@pitwall/platform';
import {
  encodeTcpAck,
  type FrameError,
  IMEI_ACCEPTED,
  IMEI_REJECTED,
  TcpFrameDecoder,
  type AvlPacket,
  type TcpDecoderEvent,
} from '@pitwall/teltonika';
import type { BackpressureMonitor } from '../backpressure/backpressure-monitor.js';
import type { LogLimiter } from '../log-limiter.js';
import type { CloseReason, IngestionMetrics } from '../metrics.js';
import type { Device, PacketSink } from '../packet-sink.js';

/** Acknowledgements for every possible record count of a packet (N is one byte), allocated once. */
const ACKS: readonly Buffer[] = Array.from({ length: 256 }, (_, n) => encodeTcpAck(n));
const MAX_UNREAD_ACK_BYTES = 64 * 1024;
/** What a Codec 12 response's log line keeps: its first messages, each cut to this many characters. */
const COMMAND_LOG_MESSAGES = 4;
const COMMAND_LOG_CHARS = 200;

export interface ConnectionOptions {
  maxFrameBytes: number;
  maxBadFrames: number;
  allowlist: ReadonlySet<string> | undefined;
}

export interface ConnectionContext {
  sink: PacketSink;
  backpressure: BackpressureMonitor;
  metrics: IngestionMetrics;
  logger: Logger;
  /** Every per-device and per-packet line goes through it. */
  logs: LogLimiter;
  options: ConnectionOptions;
  onClose(connection: DeviceConnection): void;
}

/**
 * One device's TCP connection. Frames are handled strictly in order, one packet at a time: a packet
 * is admitted (every record confirmed by Redis in the shard stream) before its acknowledgement is
 * written, and nothing is acknowledged otherwise: a packet the shard could not admit (at its cap, or
 * backpressure engaged) goes live-only and stays unacknowledged, the device resends it. While a
 * packet is in flight the socket is paused, so a connection never buffers more than what one read
 * delivered plus one incomplete frame (at most INGESTION_MAX_FRAME_BYTES + 12 bytes), and the server
 * closes it when the handshake or a started frame takes too long (see sweep in tcp-server.ts).
 */
export class DeviceConnection {
  device: Device | undefined;
  /** performance.now() when the packet in flight started storing; 0 when none is. */
  inflightSince = 0;
  /** performance.now() when the connection opened (the handshake deadline runs from here). */
  readonly openedAt = performance.now();
  /** performance.now() since when a frame (or the handshake) is incomplete; 0 when none is. */
  partialSince = 0;
  private readonly decoder: TcpFrameDecoder;
  private readonly queue: TcpDecoderEvent[] = [];
  private readonly queueRx: number[] = [];
  private readonly queueRxAt: number[] = [];
  private busy = false;
  private closed = false;
  private draining = false;
  private badFrames = 0;
  /** Set by drain() while a packet is in flight: called when the connection is idle again. */
  private markIdle: (() => void) | undefined;
  /** Ends a wait for backpressure release early (close, shutdown). */
  private wake: (() => void) | undefined;
  private readonly logs: LogLimiter;
  private readonly remote: string;

  constructor(
    readonly socket: Socket,
    private readonly ctx: ConnectionContext,
  ) {
    this.decoder = new TcpFrameDecoder({ maxFrameBytes: ctx.options.maxFrameBytes });
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.logs = ctx.logs;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.logs.debug({ remote: this.remote, err: err.message, imei: this.device?.imei }, 'socket error'));
    socket.on('close', () => this.onSocketClose());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Closes the connection (no further acknowledgement), counting why when the server decided it. */
  close(reason: CloseReason | undefined): void {
    if (this.closed) return;
    this.closed = true;
    if (reason !== undefined) this.ctx.metrics.closed(reason);
    this.queue.length = 0;
    this.wake?.();
    this.socket.destroy();
  }

  /** Bytes held for an incomplete frame or handshake. */
  get bufferedBytes(): number {
    return this.decoder.bufferedBytes;
  }

  /** True while the IMEI handshake has not been accepted. */
  get awaitingHandshake(): boolean {
    return this.device === undefined;
  }

  /** Shutdown: read nothing more, let the packet in flight finish (acknowledged if stored), then close. */
  async drain(): Promise<void> {
    this.draining = true;
    this.socket.pause();
    this.queue.length = 0;
    this.queueRx.length = 0;
    this.queueRxAt.length = 0;
    this.wake?.();
    // No promise per packet: only a drain waits for the packet in flight.
    if (!this.busy) return;
    await new Promise<void>((resolve) => {
      const earlier = this.markIdle;
      this.markIdle = earlier === undefined ? resolve : () => (earlier(), resolve());
    });
  }

  private onData(chunk: Buffer): void {
    if (this.closed || this.draining) return;
    const events = this.decoder.push(chunk);
    if (!this.decoder.midFrame) this.partialSince = 0;
    else if (this.partialSince === 0 || events.length > 0) this.partialSince = performance.now();
    if (events.length === 0) return;
    const rx = Date.now();
    const rxAt = performance.now();
    for (const event of events) {
      this.queue.push(event);
      this.queueRx.push(rx);
      this.queueRxAt.push(rxAt);
    }
    if (this.busy) {
      // A packet is in flight: read nothing more until the queue is worked off.
      this.socket.pause();
      return;
    }
    void this.pump();
  }

  private async pump(): Promise<void> {
    this.busy = true;
    try {
      while (this.queue.length > 0 && !this.closed && !this.draining) {
        const event = this.queue.shift() as TcpDecoderEvent;
        const rx = this.queueRx.shift() ?? Date.now();
        const rxAt = this.queueRxAt.shift() ?? performance.now();
        switch (event.type) {
          case 'imei':
            this.onImei(event.imei);
            break;
          case 'avl':
            await this.onPacket(event.packet, rx, rxAt);
            break;
          case 'command':
            this.ctx.metrics.commandResponses.inc();
            this.logs.debug(
              {
                imei: this.device?.imei,
                type: event.packet.type,
                count: event.packet.messages.length,
                messages: event.packet.messages
                  .slice(0, COMMAND_LOG_MESSAGES)
                  .map((m) => m.toString('latin1', 0, Math.min(m.length, COMMAND_LOG_CHARS))),
              },
              'Codec 12 message received (not stored; messages truncated)',
            );
            break;
          case 'keepalive':
            this.ctx.metrics.keepalives.inc();
            break;
          case 'error':
            this.onRejected(event.error);
            break;
        }
      }
    } finally {
      this.busy = false;
      const markIdle = this.markIdle;
      this.markIdle = undefined;
      markIdle?.();
      if (!this.closed && !this.draining && this.socket.isPaused()) this.socket.resume();
    }
  }

  private onImei(imei: string): void {
    const { allowlist } = this.ctx.options;
    if (!isImei(imei)) {
      this.ctx.metrics.rejected('tcp', 'bad_imei');
      this.logs.warn(
        { remote: this.remote, imei: imei.slice(0, 64), reason: 'bad_imei' },
        'handshake rejected: not an IMEI (15-17 digits)',
      );
      this.refuse('bad_handshake');
      return;
    }
    if (allowlist !== undefined && !allowlist.has(imei)) {
      this.logs.warn({ remote: this.remote, imei }, 'handshake rejected: IMEI not in INGESTION_IMEI_ALLOWLIST');
      this.refuse('imei_rejected');
      return;
    }
    this.device = this.ctx.sink.device(imei);
    this.socket.write(IMEI_ACCEPTED);
    this.logs.debug({ remote: this.remote, imei, shard: this.device.shard }, 'device connected');
  }

  /** Answers the handshake with 0x00 and closes once it is flushed (or the idle timeout fires). */
  private refuse(reason: CloseReason): void {
    this.closed = true;
    this.queue.length = 0;
    this.ctx.metrics.closed(reason);
    this.socket.end(IMEI_REJECTED);
  }

  private async onPacket(packet: AvlPacket, rx: number, rxAt: number): Promise<void> {
    const device = this.device;
    if (device === undefined) return; // unreachable: the decoder yields packets only after the handshake
    // Backpressure engaged: the records go live-only and wait on the device (not acknowledged).
    const heldBack = this.ctx.backpressure.isEngaged(device.shard);
    this.inflightSince = performance.now();
    let acknowledge: boolean;
    try {
      const outcome = await this.ctx.sink.store('tcp', device, packet, rx, heldBack);
      acknowledge = outcome.result === 'acknowledge';
      if (outcome.result === 'refused') {
        this.logs.debug(
          { imei: device.imei, records: packet.records.length, reason: outcome.reason, backlog: outcome.backlog },
          'packet not admitted (live-only): not acknowledged, the device resends',
        );
      } else if (outcome.future > 0) {
        this.logs.warn(
          { imei: device.imei, records: outcome.future, reason: 'future_timestamp' },
          'records dated too far ahead of the server clock: acknowledged, dead-lettered, not stored',
        );
      }
    } catch (err) {
      if (!this.closed) {
        this.ctx.metrics.deferred('tcp', 'store_failed');
        this.logs.warn(
          { imei: device.imei, records: packet.records.length, err: err instanceof Error ? err.message : String(err) },
          'packet not stored: not acknowledged, closing the connection so the device resends',
        );
        this.close('store_failed');
      }
      return;
    } finally {
      this.inflightSince = 0;
    }
    // Closed meanwhile (e.g. the Redis timeout fired): the device resends; duplicates are harmless.
    if (this.closed || !acknowledge) return;
    this.socket.write(ACKS[packet.records.length] ?? encodeTcpAck(packet.records.length));
    this.ctx.metrics.ack.tcp.observe((performance.now() - rxAt) / 1000);
    // A device that sends without reading its acknowledgements would make them pile up here.
    if (this.socket.writableLength > MAX_UNREAD_ACK_BYTES) {
      this.logs.warn({ imei: device.imei }, 'device does not read its acknowledgements: closing the connection');
      this.close('slow_reader');
    }
  }

  private onRejected(error: FrameError): void {
    this.ctx.metrics.rejected('tcp', error.reason);
    this.badFrames++;
    const handshake = error.reason === 'data_before_imei' || error.reason === 'bad_imei';
    this.logs.warn(
      {
        remote: this.remote,
        imei: this.device?.imei,
        reason: error.reason,
        detail: error.message.slice(0, 200),
        badFrames: this.badFrames,
      },
      `frame rejected (${error.reason}): not acknowledged`,
    );
    if (handshake) {
      this.close('bad_handshake');
    } else if (this.badFrames > this.ctx.options.maxBadFrames) {
      this.logs.warn(
        { remote: this.remote, imei: this.device?.imei, badFrames: this.badFrames },
        'too many rejected frames: closing the connection',
      );
      this.close('bad_frames');
    }
  }

  private onSocketClose(): void {
    if (!this.closed) {
      this.closed = true;
      for (const event of this.decoder.end()) if (event.type === 'error') this.onRejected(event.error);
    }
    this.queue.length = 0;
    this.ctx.onClose(this);
  }

  /** A packet stuck in Redis for longer than the timeout: give up on it and close. */
  timeOut(): void {
    if (this.closed || this.inflightSince === 0) return;
    this.ctx.metrics.deferred('tcp', 'store_failed');
    this.logs.warn({ imei: this.device?.imei }, 'Redis did not confirm the packet in time: not acknowledged, closing the connection');
    this.close('store_failed');
  }

  /** The handshake or a started frame took too long (slow-loris): close, nothing acknowledged. */
  expire(reason: 'handshake_timeout' | 'frame_timeout'): void {
    if (this.closed || this.inflightSince !== 0) return;
    this.logs.warn(
      { remote: this.remote, imei: this.device?.imei, reason, buffered: this.decoder.bufferedBytes },
      reason === 'handshake_timeout' ? 'IMEI handshake not completed in time: closing' : 'frame not completed in time: closing',
    );
    this.close(reason);
  }
}
