import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from '@pitwall/platform';
import { RedisConnectionError } from './redis-connection-error.js';
import { RedisReplyError } from './redis-reply-error.js';
import { encodeCommand, errorReply, ReplyScanner } from './resp.js';

export interface RespConnectionOptions {
  /** redis://[user:password@]host[:port][/db] or rediss:// (TLS). */
  url: string;
  /** CLIENT SETNAME: what CLIENT LIST shows for it. */
  name: string;
  logger: Logger;
  /** How long a reply may take beyond what its command blocks, before the connection is taken for dead. */
  replyTimeoutMs: number;
}

interface Waiter {
  resolve: (reply: Buffer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** Replies up to this size are copied out; larger ones keep the receive buffer they arrived in. */
const COPIED_REPLY_BYTES = 16 * 1024;
const MIN_BUFFER_BYTES = 64 * 1024;

/**
 * One connection to Redis for the writer's stream commands (XREADGROUP, XAUTOCLAIM, XACK), replying
 * with the raw bytes of each reply for in-place parsing (see resp.ts). Commands are pipelined in
 * order. It connects on first use and again on the first command after a failure: retrying, with its
 * backoff, is the caller's job (the pipeline retries every Redis operation). Every command has a
 * deadline, so a half-open connection fails its command instead of hanging the pipeline.
 */
export class RespConnection {
  private socket: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private readonly waiters: Waiter[] = [];
  private buf = Buffer.allocUnsafe(MIN_BUFFER_BYTES);
  private length = 0;
  private readonly scanner = new ReplyScanner();
  private readonly setup: Buffer[];
  private readonly target: { host: string; port: number; tls: boolean };
  private problem: string | undefined = 'connecting';
  private down = false;
  private closed = false;

  constructor(private readonly options: RespConnectionOptions) {
    const url = new URL(options.url);
    this.target = {
      host: url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
      port: Number(url.port || 6379),
      tls: url.protocol === 'rediss:',
    };
    this.setup = [];
    const password = decodeURIComponent(url.password);
    const username = decodeURIComponent(url.username);
    if (password !== '') this.setup.push(encodeCommand(username !== '' ? ['AUTH', username, password] : ['AUTH', password]));
    const db = url.pathname.replace(/^\//, '');
    if (db !== '' && db !== '0') this.setup.push(encodeCommand(['SELECT', db]));
    this.setup.push(encodeCommand(['CLIENT', 'SETNAME', options.name]));
  }

  /** Readiness: undefined while connected, else why not. */
  readinessProblem(): string | undefined {
    return this.problem === undefined ? undefined : `redis ${this.problem}`;
  }

  /**
   * Sends one command (encodeCommand's bytes) and resolves with its reply's bytes. `blockMs` is how
   * long the command itself may block in Redis (XREADGROUP BLOCK). An error reply rejects with
   * RedisReplyError; no reply (no connection, dropped, deadline passed) with RedisConnectionError.
   */
  async send(command: Buffer, blockMs = 0): Promise<Buffer> {
    if (this.closed) throw new RedisConnectionError('redis connection closed');
    const socket = this.socket ?? (await (this.connecting ??= this.connect()));
    return this.write(socket, command, blockMs);
  }

  /** Fails what is in flight and closes the connection. */
  close(): Promise<void> {
    this.closed = true;
    this.problem = 'closed';
    this.socket?.destroy();
    this.failAll(new RedisConnectionError('redis connection closed'));
    return Promise.resolve();
  }

  private write(socket: net.Socket, command: Buffer, blockMs: number): Promise<Buffer> {
    if (socket.destroyed) return Promise.reject(new RedisConnectionError('redis connection lost'));
    return new Promise<Buffer>((resolve, reject) => {
      const timeoutMs = blockMs + this.options.replyTimeoutMs;
      // No reply in time: the connection is taken for dead, which fails this and every later command on it.
      const timer = setTimeout(() => socket.destroy(new RedisConnectionError(`no reply from redis within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ resolve, reject, timer });
      socket.write(command);
    });
  }

  private async connect(): Promise<net.Socket> {
    try {
      const socket = await this.open();
      this.attach(socket);
      for (const command of this.setup) await this.write(socket, command, 0);
      if (this.closed) {
        socket.destroy();
        throw new RedisConnectionError('redis connection closed');
      }
      this.socket = socket;
      this.problem = undefined;
      if (this.down) this.options.logger.info({ client: this.options.name }, 'redis connection restored');
      this.down = false;
      return socket;
    } catch (err) {
      this.lost(err);
      throw err instanceof RedisReplyError || err instanceof RedisConnectionError
        ? err
        : new RedisConnectionError(`redis unreachable: ${(err as Error).message}`, { cause: err });
    } finally {
      this.connecting = undefined;
    }
  }

  /** A connected socket (TLS for rediss://), or rejects within the reply timeout. */
  private open(): Promise<net.Socket> {
    const { host, port } = this.target;
    return new Promise<net.Socket>((resolve, reject) => {
      const socket = this.target.tls
        ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host })
        : net.connect({ host, port });
      const timer = setTimeout(
        () => socket.destroy(new Error(`connect timeout after ${this.options.replyTimeoutMs} ms`)),
        this.options.replyTimeoutMs,
      );
      const failed = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('error', failed);
      socket.once(this.target.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', failed);
        resolve(socket);
      });
    });
  }

  private attach(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    this.length = 0;
    this.scanner.reset();
    let failure: Error | undefined;
    socket.on('data', (chunk: Buffer) => {
      try {
        this.receive(chunk);
      } catch (err) {
        socket.destroy(err as Error);
      }
    });
    socket.on('error', (err) => {
      failure = err;
    });
    socket.on('close', () => {
      if (this.socket === socket) this.socket = undefined;
      const reason = failure?.message ?? 'connection closed by redis';
      this.failAll(
        failure instanceof RedisConnectionError
          ? failure
          : new RedisConnectionError(`redis connection lost: ${reason}`, { cause: failure }),
      );
      if (!this.closed) this.lost(failure ?? new Error(reason));
    });
  }

  private lost(err: unknown): void {
    if (this.closed) return;
    this.problem = 'down';
    if (this.down) return;
    this.down = true;
    this.options.logger.warn(
      { err: err instanceof Error ? err.message : String(err), client: this.options.name },
      'redis connection error',
    );
  }

  private failAll(err: Error): void {
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(err);
    }
  }

  /** Appends received bytes and hands every complete reply to the command waiting for it, in order. */
  private receive(chunk: Buffer): void {
    if (this.length + chunk.length > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + chunk.length));
      this.buf.copy(next, 0, 0, this.length);
      this.buf = next;
    }
    chunk.copy(this.buf, this.length);
    this.length += chunk.length;
    for (;;) {
      const end = this.scanner.scan(this.buf, this.length);
      if (end < 0) return;
      this.scanner.reset();
      let reply: Buffer;
      if (end <= COPIED_REPLY_BYTES) {
        reply = Buffer.from(this.buf.subarray(0, end));
        this.buf.copyWithin(0, end, this.length);
      } else {
        // A batch's worth of entries: the reply keeps this buffer (the batch reads it in place until
        // it is acknowledged); the rest moves to a new one sized for the next reply like it.
        reply = this.buf.subarray(0, end);
        const next = Buffer.allocUnsafe(Math.max(MIN_BUFFER_BYTES, end + (end >> 2), this.length - end));
        this.buf.copy(next, 0, end, this.length);
        this.buf = next;
      }
      this.length -= end;
      const waiter = this.waiters.shift();
      if (waiter === undefined) throw new RedisReplyError('reply from redis with no command waiting for it');
      clearTimeout(waiter.timer);
      const message = errorReply(reply);
      if (message === undefined) waiter.resolve(reply);
      else waiter.reject(new RedisReplyError(message));
    }
  }
}
