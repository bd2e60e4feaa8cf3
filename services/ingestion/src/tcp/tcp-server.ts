import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { idempotent, type Logger, type Service } from '@pitwall/platform';
import type { BackpressureMonitor } from '../backpressure/backpressure-monitor.js';
import type { LogLimiter } from '../log-limiter.js';
import type { IngestionMetrics } from '../metrics.js';
import type { PacketSink } from '../packet-sink.js';
import { DeviceConnection, type ConnectionOptions } from './device-connection.js';

export interface TcpServerOptions extends ConnectionOptions {
  host: string;
  port: number;
  maxConnections: number;
  maxConnectionsPerAddress: number;
  idleTimeoutMs: number;
  handshakeTimeoutMs: number;
  frameTimeoutMs: number;
  redisTimeoutMs: number;
  drainTimeoutMs: number;
}

/**
 * The Teltonika TCP listener: accepts devices up to the connection limits (in all and per source
 * address) and runs one DeviceConnection each. One sweeper enforces every connection's deadlines:
 * Redis confirmation, IMEI handshake, completion of a started frame.
 */
export class TcpIngestionServer implements Service {
  readonly name = 'tcp-server';
  private server: Server | undefined;
  private readonly connections = new Set<DeviceConnection>();
  private readonly perAddress = new Map<string, number>();
  private sweeper: NodeJS.Timeout | undefined;
  private accepting = false;

  constructor(
    private readonly options: TcpServerOptions,
    private readonly sink: PacketSink,
    private readonly backpressure: BackpressureMonitor,
    private readonly metrics: IngestionMetrics,
    private readonly logger: Logger,
    private readonly logs: LogLimiter,
  ) {
    metrics.measureBufferedBytes(() => {
      let bytes = 0;
      for (const connection of this.connections) bytes += connection.bufferedBytes;
      return bytes;
    });
  }

  get listening(): boolean {
    return this.server?.listening ?? false;
  }

  get boundPort(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? this.options.port;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Connections whose packet is being stored right now. */
  get inflightPackets(): number {
    let n = 0;
    for (const connection of this.connections) if (connection.inflightSince !== 0) n++;
    return n;
  }

  async start(): Promise<void> {
    const server = createServer({ noDelay: true }, (socket) => this.onConnection(socket));
    server.on('error', (err) => this.logger.error({ err }, 'TCP server error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.options.port, host: this.options.host, backlog: 4096 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.accepting = true;
    // One timer for every connection's deadlines, not one per packet or connection.
    const shortest = Math.min(this.options.redisTimeoutMs, this.options.handshakeTimeoutMs, this.options.frameTimeoutMs);
    const sweepMs = Math.max(50, Math.min(1_000, Math.floor(shortest / 4)));
    this.sweeper = setInterval(() => this.sweep(), sweepMs);
    this.sweeper.unref();
    this.logger.info({ port: this.boundPort, host: this.options.host }, 'TCP listener ready');
  }

  private onConnection(socket: Socket): void {
    if (!this.accepting || this.connections.size >= this.options.maxConnections) {
      this.metrics.closed(this.accepting ? 'max_connections' : 'shutdown');
      if (this.accepting)
        this.logs.warn(
          { remote: socket.remoteAddress, limit: this.options.maxConnections },
          'connection refused: INGESTION_MAX_CONNECTIONS reached',
        );
      socket.destroy();
      return;
    }
    const address = socket.remoteAddress ?? '?';
    const fromAddress = this.perAddress.get(address) ?? 0;
    if (fromAddress >= this.options.maxConnectionsPerAddress) {
      this.metrics.closed('max_connections_per_address');
      this.logs.warn(
        { remote: address, limit: this.options.maxConnectionsPerAddress },
        'connection refused: INGESTION_MAX_CONNECTIONS_PER_ADDRESS reached for this address',
      );
      socket.destroy();
      return;
    }
    this.perAddress.set(address, fromAddress + 1);
    const connection = new DeviceConnection(socket, {
      sink: this.sink,
      backpressure: this.backpressure,
      metrics: this.metrics,
      logger: this.logger,
      logs: this.logs,
      options: this.options,
      onClose: (c) => {
        if (!this.connections.delete(c)) return;
        this.metrics.tcpConnections.dec();
        const left = (this.perAddress.get(address) ?? 1) - 1;
        if (left > 0) this.perAddress.set(address, left);
        else this.perAddress.delete(address);
      },
    });
    this.connections.add(connection);
    this.metrics.tcpConnections.inc();
    socket.setTimeout(this.options.idleTimeoutMs, () => {
      connection.close('idle');
    });
  }

  private sweep(): void {
    const now = performance.now();
    const redisDeadline = now - this.options.redisTimeoutMs;
    const handshakeDeadline = now - this.options.handshakeTimeoutMs;
    const frameDeadline = now - this.options.frameTimeoutMs;
    for (const connection of this.connections) {
      if (connection.inflightSince !== 0) {
        if (connection.inflightSince < redisDeadline) connection.timeOut();
      } else if (connection.awaitingHandshake && connection.openedAt < handshakeDeadline) {
        connection.expire('handshake_timeout');
      } else if (connection.partialSince !== 0 && connection.partialSince < frameDeadline) {
        connection.expire('frame_timeout');
      }
    }
  }

  /** Open connections from one source address. */
  connectionsFrom(address: string): number {
    return this.perAddress.get(address) ?? 0;
  }

  /** Stop accepting, let in-flight packets finish (bounded by the drain timeout), close every socket. */
  close = idempotent(async () => {
    this.accepting = false;
    const server = this.server;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    const connections = [...this.connections];
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(connections.map((c) => c.drain())),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.options.drainTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    for (const connection of connections) connection.close('shutdown');
    clearInterval(this.sweeper);
    await closed;
    this.logger.info({ connections: connections.length }, 'TCP listener closed');
  });
}
