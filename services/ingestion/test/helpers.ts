import { connect, type Socket } from 'node:net';
import { freePort, startService, type ServiceProcess } from '@pitwall/testkit';
import { encodeImeiHandshake } from '@pitwall/teltonika';

/** A raw TCP client speaking as a device: every byte the server sends back is kept, in order. */
export class TestDevice {
  received = Buffer.alloc(0);
  readonly closed: Promise<void>;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      for (const wake of this.waiters.splice(0)) wake();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        resolve();
        for (const wake of this.waiters.splice(0)) wake();
      }),
    );
  }

  static async connect(port: number): Promise<TestDevice> {
    const socket = connect({ port, host: '127.0.0.1', noDelay: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new TestDevice(socket);
  }

  /** Connects and completes the handshake (expects 0x01). */
  static async handshake(port: number, imei: string): Promise<TestDevice> {
    const device = await TestDevice.connect(port);
    device.write(encodeImeiHandshake(imei));
    const reply = await device.bytes(1);
    if (reply.toString('hex') !== '01') throw new Error(`handshake refused: ${reply.toString('hex')}`);
    return device;
  }

  write(data: Buffer): void {
    this.socket.write(data);
  }

  /** Resolves with all bytes received once there are at least `total`; rejects if the socket closes first or after timeoutMs. */
  async bytes(total: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length < total) {
      if (this.socket.destroyed || this.socket.readableEnded) {
        throw new Error(`connection closed after ${this.received.length} of ${total} bytes: ${this.received.toString('hex')}`);
      }
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`only ${this.received.length} of ${total} bytes within ${timeoutMs} ms: ${this.received.toString('hex')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.received;
  }

  close(): void {
    this.socket.destroy();
  }

  /** Resolves once the server has closed the connection; rejects if it is still open after timeoutMs. */
  async closedByServer(timeoutMs = 15_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.closed,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the server did not close the connection within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}

export interface Ingestion extends ServiceProcess {
  tcpPort: number;
  udpPort: number;
}

/** The built ingestion service (dist/main.js) on free ports. */
export async function startIngestion(env: Record<string, string>): Promise<Ingestion> {
  const port = await freePort();
  const service = await startService('ingestion', {
    INGESTION_TCP_PORT: String(port),
    INGESTION_UDP_PORT: String(port),
    INGESTION_HOST: '127.0.0.1',
    ...env,
  });
  return { ...service, tcpPort: port, udpPort: port };
}
