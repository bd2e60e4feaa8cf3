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
  /** How long the command itself may block in Redis (XREADGROUP BLOCK). */
  blockMs: number;
  resolve: (reply: Buffer) => void;
  reject: (err: Error) => void;
}

/** Replies up to this size are copied out; larger ones keep the receive buffer they arrived in. */
const COPIED_REPLY_BYTES = 16 * 1024;
const MIN_BUFFER_BYTES = 64 * 1024;

/**
 * One socket and everything that belongs to it: the commands waiting for a reply on it, in order, and
 * its receive buffer. A socket that failed keeps its own state, so nothing it does later (its close
 * event, a late byte) can touch the socket that replaced it.
 */
class Link {
  private readonly waiters: Waiter[] = [];
  private buf = Buffer.allocUnsafe(MIN_BUFFER_BYTES);
  private length = 0;
  private readonly scanner = new ReplyScanner();
  private timer: NodeJS.Timeout | undefined;
  private failure: Error | undefined;

  constructor(
    readonly socket: net.Socket,
    private readonly replyTimeoutMs: number,
    onClose: (link: Link, err: Error) => void,
  ) {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.receive(chunk);
      } catch (err) {
        socket.destroy(err as Error);
      }
    });
    socket.on('error', (err) => {
      this.failure = err;
    });
    socket.on('close', () => {
      clearTimeout(this.timer);
      const reason = this.failure?.message ?? 'connection closed by redis';
      const err =
        this.failure instanceof RedisConnectionError
          ? this.failure
          : new RedisConnectionError(`redis connection lost: ${reason}`, { cause: this.failure });
      this.failAll(err);
      onClose(this, err);
    });
  }

  get alive(): boolean {
    return !this.socket.destroyed;
  }

  /** Writes a command; resolves with its reply's bytes. */
  send(command: Buffer, blockMs: number): Promise<Buffer> {
    if (this.socket.destroyed) return Promise.reject(new RedisConnectionError('redis connection lost'));
    return new Promise<Buffer>((resolve, reject) => {
      this.waiters.push({ blockMs, resolve, reject });
      if (this.waiters.length === 1) this.armDeadline();
      this.socket.write(command);
    });
  }

  failAll(err: Error): void {
    for (const waiter of this.waiters.splice(0)) waiter.reject(err);
  }

  /**
   * The deadline runs for the command at the head of the queue only, from when it got there: a
   * command pipelined behind a blocking read waits for that read without using up its own time. No
   * reply in time: the connection is taken for dead, which fails every command on it.
   */
  private armDeadline(): void {
    clearTimeout(this.timer);
    const head = this.waiters[0];
    if (head === undefined) return;
    const timeoutMs = head.blockMs + this.replyTimeoutMs;
    this.timer = setTimeout(() => this.socket.destroy(new RedisConnectionError(`no reply from redis within ${timeoutMs} ms`)), timeoutMs);
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
      if (end <= COPIED_REPLY_BYTES || this.buf.length > end + (end >> 1)) {
        // Small, or in a buffer that grew well past it: a copy of its own, and the buffer is reused.
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
      this.armDeadline();
      const message = errorReply(reply);
      if (message === undefined) waiter.resolve(reply);
      else waiter.reject(new RedisReplyError(message));
    }
  }
}

/**
 * One connection to Redis for a service's own stream commands (XREADGROUP, XREAD, XAUTOCLAIM, XACK), replying
 * with the raw bytes of each reply for in-place parsing (see resp.ts). Commands are pipelined in
 * order. It connects on first use and again on the first command after a failure: retrying, with its
 * backoff, is the caller's job (the pipeline retries every Redis operation). Every command has a
 * deadline, so a half-open connection fails its command instead of hanging the pipeline.
 */
export class RespConnection {
  private link: Link | undefined;
  private connecting: Promise<Link> | undefined;
  private readonly setup: Buffer[];
  private readonly setName: Buffer;
  private readonly target: { host: string; port: number; tls: boolean };
  private problem: string | undefined = 'connecting';
  private down = false;
  private closed = false;
  private setNameRefused = false;

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
    this.setName = encodeCommand(['CLIENT', 'SETNAME', options.name]);
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
    const link = this.link?.alive === true ? this.link : await (this.connecting ??= this.connect());
    return link.send(command, blockMs);
  }

  /** Fails what is in flight and closes the connection. */
  close(): Promise<void> {
    this.closed = true;
    this.problem = 'closed';
    this.link?.failAll(new RedisConnectionError('redis connection closed'));
    this.link?.socket.destroy();
    return Promise.resolve();
  }

  private async connect(): Promise<Link> {
    let link: Link | undefined;
    try {
      const socket = await this.open();
      link = new Link(socket, this.options.replyTimeoutMs, (closed, err) => {
        // Only the current socket's end matters; one whose set-up failed was dealt with below.
        if (this.link !== closed) return;
        this.link = undefined;
        this.lost(err);
      });
      for (const command of this.setup) await link.send(command, 0);
      await link.send(this.setName, 0).catch((err: unknown) => {
        // A name only helps operators; a user whose ACL forbids CLIENT may still read the stream.
        if (!(err instanceof RedisReplyError)) throw err;
        if (!this.setNameRefused) this.options.logger.warn({ err: err.message, client: this.options.name }, 'redis refused CLIENT SETNAME');
        this.setNameRefused = true;
      });
      if (this.closed) throw new RedisConnectionError('redis connection closed');
      this.link = link;
      this.problem = undefined;
      if (this.down) this.options.logger.info({ client: this.options.name }, 'redis connection restored');
      this.down = false;
      return link;
    } catch (err) {
      // A socket whose set-up failed (refused AUTH, closed meanwhile) is not kept open.
      link?.socket.destroy();
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
}
