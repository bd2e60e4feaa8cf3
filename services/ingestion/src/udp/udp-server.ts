import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isImei } from '@pitwall/contract';
import { idempotent, type Logger, type Service } from '@pitwall/platform';
import { decodeUdpPacket, encodeUdpAck, FrameError, type FrameRejectReason } from '@pitwall/teltonika';
import type { BackpressureMonitor } from '../backpressure/backpressure-monitor.js';
import type { IngestionMetrics } from '../metrics.js';
import type { PacketSink } from '../packet-sink.js';
import type { LogLimiter } from '../log-limiter.js';

export interface UdpServerOptions {
  host: string;
  port: number;
  maxInflight: number;
  allowlist: ReadonlySet<string> | undefined;
  drainTimeoutMs: number;
  redisTimeoutMs: number;
}

/**
 * The Teltonika UDP listener. Each datagram is one packet, acknowledged (0x0005, packet id, 0x01,
 * AVL packet id, count) only after every record is admitted to its shard. A datagram that cannot be
 * admitted now (backpressure or the shard at its cap: its records go live-only; too many in flight,
 * Redis failing: dropped) is not acknowledged: the device resends.
 */
export class UdpIngestionServer implements Service {
  readonly name = 'udp-server';
  private socket: Socket | undefined;
  private inflight = 0;
  private draining = false;
  private idleWaiters: (() => void)[] = [];
  constructor(
    private readonly options: UdpServerOptions,
    private readonly sink: PacketSink,
    private readonly backpressure: BackpressureMonitor,
    private readonly metrics: IngestionMetrics,
    private readonly logger: Logger,
    private readonly rejectLog: LogLimiter,
  ) {}

  get boundPort(): number {
    return this.socket?.address().port ?? this.options.port;
  }

  async start(): Promise<void> {
    const socket = createSocket({ type: this.options.host.includes(':') ? 'udp6' : 'udp4', recvBufferSize: 4 * 1024 * 1024 });
    socket.on('message', (msg, remote) => this.onMessage(socket, msg, remote));
    socket.on('error', (err) => this.logger.error({ err }, 'UDP socket error'));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.options.port, this.options.host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    this.socket = socket;
    this.logger.info({ port: this.boundPort, host: this.options.host }, 'UDP listener ready');
  }

  private onMessage(socket: Socket, datagram: Buffer, remote: RemoteInfo): void {
    if (this.draining) return;
    const rx = Date.now();
    const rxAt = performance.now();
    const decoded = decodeUdpPacket(datagram);
    if (decoded instanceof FrameError) {
      this.reject(decoded.reason, decoded.message, remote);
      return;
    }
    if (!isImei(decoded.imei)) {
      this.reject('bad_imei', `not an IMEI (15-17 digits): ${decoded.imei}`, remote);
      return;
    }
    if (this.options.allowlist !== undefined && !this.options.allowlist.has(decoded.imei)) {
      this.metrics.deferred('udp', 'imei_rejected');
      this.rejectLog.warn(
        { imei: decoded.imei, remote: `${remote.address}:${remote.port}` },
        'datagram dropped: IMEI not in INGESTION_IMEI_ALLOWLIST',
      );
      return;
    }
    const device = this.sink.device(decoded.imei);
    // Backpressure engaged: the records go live-only and wait on the device (not acknowledged).
    const heldBack = this.backpressure.isEngaged(device.shard);
    if (this.inflight >= this.options.maxInflight) {
      this.metrics.deferred('udp', 'overloaded');
      return;
    }
    this.inflight++;
    const records = decoded.packet.records.length;
    this.sink
      .store('udp', device, decoded.packet, rx, heldBack)
      .then(
        (outcome) => {
          if (outcome.result === 'refused') return;
          if (outcome.future > 0)
            this.rejectLog.warn(
              { imei: device.imei, records: outcome.future, reason: 'future_timestamp' },
              'records dated too far ahead of the server clock: acknowledged, dead-lettered, not stored',
            );
          // Confirmed too late: the device has given up on this datagram and will resend it.
          if (performance.now() - rxAt > this.options.redisTimeoutMs) {
            this.metrics.deferred('udp', 'store_failed');
            return;
          }
          socket.send(
            encodeUdpAck({ packetId: decoded.packetId, avlPacketId: decoded.avlPacketId, accepted: records }),
            remote.port,
            remote.address,
          );
          this.metrics.ack.udp.observe((performance.now() - rxAt) / 1000);
        },
        (err: unknown) => {
          this.metrics.deferred('udp', 'store_failed');
          this.rejectLog.warn(
            { imei: device.imei, records, err: err instanceof Error ? err.message : String(err) },
            'datagram not stored: not acknowledged (the device resends)',
          );
        },
      )
      .finally(() => {
        this.inflight--;
        if (this.inflight === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
      });
  }

  private reject(reason: FrameRejectReason, message: string, remote: RemoteInfo): void {
    this.metrics.rejected('udp', reason);
    this.rejectLog.warn(
      { reason, detail: message.slice(0, 200), remote: `${remote.address}:${remote.port}` },
      `datagram rejected (${reason}): not acknowledged`,
    );
  }

  /** Ignore new datagrams, let those in flight finish (bounded), then close the socket. */
  close = idempotent(async () => {
    this.draining = true;
    const socket = this.socket;
    if (!socket) return;
    if (this.inflight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.options.drainTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  });
}
