import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { ErrorMessage, PositionsMessage, SubscribedMessage, SubscribeRequest } from '@pitwall/live-protocol';
import { clientFrame, FrameReader, OPCODE, scanRx, startsWith, type FrameHandler } from './ws-frames.js';
import { LATENCY_BUCKETS, type ViewerCommand, type ViewerKind, type ViewerReply } from './protocol.js';

// A process of many viewers (forked by the live-gateway and fanout suites, so the clients never share
// an event loop with the server they measure). Each viewer is a raw TCP socket that does the HTTP
// upgrade and speaks WebSocket framing itself (ws-frames.ts): every `positions` frame is counted with
// its bytes from its header and first bytes alone. All sockets read into one shared buffer (net's
// `onread`), so a read allocates nothing. Socket.IO viewers speak Engine.IO v4 / Socket.IO v5 over
// the same framing (the real socket.io-client parses every frame in full and would saturate first).
//
// Two kinds of viewers, so that reading stays far cheaper than serving: probes (one in `sampleEvery`,
// spread over the events and the connection order) read as soon as bytes arrive and read every frame
// whole for the rx -> receive latency of its positions; counting viewers read only every
// LAZY_PERIOD_MS, several frames per read instead of one read (wake-up, syscall, callback) per frame,
// and only count. Frames wait in the kernel meanwhile, already sent: the server's work is the same,
// and `count` reads everything pending before answering, so the counts at the end of a step are complete.
// With sampleEvery 1 every viewer is a probe.

/** How a server message of this type starts: the gateway writes `type` first (the protocol's types name it). */
const typePrefix = (type: PositionsMessage['type'] | SubscribedMessage['type'] | ErrorMessage['type']) => `{"type":"${type}"`;
const POSITIONS_PREFIX = Buffer.from(typePrefix('positions'));
const SUBSCRIBED_PREFIX = typePrefix('subscribed');
const ERROR_PREFIX = typePrefix('error');
const SOCKET_IO_POSITIONS_PREFIX = Buffer.from('42["positions"');
/** Frames this small are read whole even when not sampled: Engine.IO pings ("2") and control replies. */
const SMALL_FRAME = 64;
const CONNECT_TIMEOUT_MS = 30_000;
const CONCURRENT_CONNECTS = 64;
/** A counting viewer reads this often; a slice of them is woken every LAZY_TICK_MS. */
const LAZY_PERIOD_MS = 1_000;
const LAZY_TICK_MS = 50;

let frames = 0;
let bytes = 0;
let sampledFrames = 0;
let positions = 0;
let latency = new Array<number>(LATENCY_BUCKETS + 1).fill(0);
let open = 0;
let lost = 0;
const viewers = new Set<Viewer>();
/** Every viewer made, in the order of its number (disconnect takes the last ones). */
const made: Viewer[] = [];
/** Counting viewers, woken in slices; a closed one is dropped at its turn. */
const lazy: Viewer[] = [];
let lazyNext = 0;
const shared = Buffer.allocUnsafe(256 * 1024);
let complaints = 0;

/** The first few refusals explain a failed run; thousands of the same line would not. */
function complain(message: string): void {
  if (++complaints <= 3) process.stderr.write(`${message}\n`);
}

function recordRx(rx: number): void {
  const ms = Math.max(0, Math.min(LATENCY_BUCKETS, Date.now() - rx));
  latency[ms] = (latency[ms] ?? 0) + 1;
}

class Viewer implements FrameHandler {
  private readonly socket: Socket;
  private readonly reader = new FrameReader(this);
  /** Bytes of the HTTP upgrade response until its end; undefined once upgraded. */
  private response: Buffer | undefined = Buffer.alloc(0);
  private subscribed = false;
  private ended = false;
  private readonly positionsPrefix: Buffer;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly kind: ViewerKind,
    url: URL,
    private readonly eventId: number,
    /** A probe reads at once and every frame whole; a counting viewer reads in batches and only counts. */
    private readonly probe: boolean,
    private readonly done: (ok: boolean) => void,
  ) {
    this.positionsPrefix = kind === 'live' ? POSITIONS_PREFIX : SOCKET_IO_POSITIONS_PREFIX;
    this.timer = setTimeout(() => this.end(), CONNECT_TIMEOUT_MS);
    this.socket = connect({
      host: url.hostname,
      port: Number(url.port),
      noDelay: true,
      onread: {
        buffer: shared,
        callback: (n, buffer) => {
          this.onBytes(buffer, n);
          // false stops reading until wake(): a counting viewer's frames wait for its next turn.
          return !this.ended && (this.probe || !this.subscribed);
        },
      },
    });
    this.socket.on('connect', () => {
      this.socket.write(
        `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.socket.on('error', () => this.end());
    this.socket.on('close', () => this.end());
    viewers.add(this);
    made.push(this);
  }

  onHeader(opcode: number, length: number): boolean {
    return this.probe || !this.subscribed || opcode !== OPCODE.text || length < SMALL_FRAME;
  }

  /** Reads what is pending (a counting viewer, at its turn). */
  wake(): void {
    if (!this.ended) this.socket.resume();
  }

  get closed(): boolean {
    return this.ended;
  }

  onFrame(opcode: number, length: number, head: Buffer, payload: Buffer | undefined): boolean {
    if (opcode === OPCODE.ping) {
      this.socket.write(clientFrame(OPCODE.pong, payload ?? Buffer.alloc(0)));
      return true;
    }
    if (opcode === OPCODE.close) {
      this.socket.write(clientFrame(OPCODE.close, Buffer.alloc(0)));
      this.end();
      return false;
    }
    if (opcode !== OPCODE.text) return true;
    if (this.subscribed && startsWith(head, this.positionsPrefix)) {
      frames++;
      bytes += length;
      if (payload !== undefined) {
        sampledFrames++;
        positions += scanRx(payload, recordRx);
      }
      return true;
    }
    if (payload !== undefined) this.onControl(payload.toString('utf8'));
    return true;
  }

  /** Replies and handshake messages (read whole): the subscribe flow of each protocol. */
  private onControl(text: string): void {
    if (this.kind === 'live') {
      if (text.startsWith(SUBSCRIBED_PREFIX)) this.becomeSubscribed();
      else if (text.startsWith(ERROR_PREFIX) && !this.subscribed) {
        complain(`viewer subscribe refused: ${text.slice(0, 300)}`);
        this.end();
      }
      return;
    }
    // Engine.IO: 0 open, 2 ping / 3 pong, 4 message; Socket.IO inside: 0 connect, 2 event, 3 ack.
    if (text === '2') this.send('3');
    else if (text.startsWith('0{')) this.send('40');
    else if (text.startsWith('40')) this.send(`420["subscribe",${this.eventId}]`);
    else if (text.startsWith('430')) this.becomeSubscribed();
  }

  private becomeSubscribed(): void {
    if (this.subscribed) return;
    this.subscribed = true;
    open++;
    if (!this.probe) lazy.push(this);
    clearTimeout(this.timer);
    this.done(true);
  }

  private onBytes(buffer: Uint8Array, n: number): void {
    if (this.ended) return;
    if (this.response === undefined) {
      this.reader.push(buffer, 0, n);
      return;
    }
    this.response = Buffer.concat([this.response, buffer.subarray(0, n)]);
    const end = this.response.indexOf('\r\n\r\n');
    if (end === -1) return;
    const response = this.response;
    this.response = undefined;
    if (!response.subarray(0, 12).toString('latin1').startsWith('HTTP/1.1 101')) {
      complain(`viewer upgrade refused: ${response.subarray(0, Math.min(end, 200)).toString('latin1')}`);
      this.end();
      return;
    }
    if (this.kind === 'live') {
      const subscribe: SubscribeRequest = { type: 'subscribe', event_id: this.eventId, uid: 's' };
      this.send(JSON.stringify(subscribe));
    }
    this.reader.push(response, end + 4, response.length);
  }

  private send(text: string): void {
    this.socket.write(clientFrame(OPCODE.text, text));
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    viewers.delete(this);
    if (this.subscribed) {
      open--;
      lost++;
    } else {
      this.done(false);
    }
    this.socket.destroy();
  }

  /** Closing on purpose (end of the run): not a lost viewer. */
  terminate(): void {
    if (this.subscribed) {
      this.subscribed = false;
      open--;
    }
    this.end();
  }
}

function connectOne(kind: ViewerKind, url: URL, eventId: number, probe: boolean): Promise<boolean> {
  return new Promise((resolve) => new Viewer(kind, url, eventId, probe, resolve));
}

/** Wakes the next slice of counting viewers: each reads once every LAZY_PERIOD_MS. */
function wakeSlice(): void {
  const slice = Math.ceil((lazy.length * LAZY_TICK_MS) / LAZY_PERIOD_MS);
  for (let i = 0; i < slice && lazy.length > 0; i++) {
    if (lazyNext >= lazy.length) lazyNext = 0;
    const viewer = lazy[lazyNext] as Viewer;
    if (viewer.closed) {
      lazy.splice(lazyNext, 1);
      continue;
    }
    viewer.wake();
    lazyNext++;
  }
}
setInterval(wakeSlice, LAZY_TICK_MS).unref();

async function connectAll(command: Extract<ViewerCommand, { cmd: 'connect' }>): Promise<number> {
  const sampleEvery = Math.max(1, command.sampleEvery ?? 1);
  const base = new URL(command.url);
  const url =
    command.kind === 'socketio'
      ? new URL('/socket.io/?EIO=4&transport=websocket', base)
      : command.token === undefined
        ? base
        : new URL(`${base.pathname}?access_token=${encodeURIComponent(command.token)}`, base);
  let failed = 0;
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < command.viewers; i = next++) {
      const index = command.offset + i;
      const eventId = command.events[index % command.events.length] ?? 1;
      // Probes: every event's viewer in one round of the events out of sampleEvery rounds.
      const probe = Math.floor(index / command.events.length) % sampleEvery === 0;
      if (!(await connectOne(command.kind, url, eventId, probe))) failed++;
    }
  };
  // Connection storms are not what is measured: a bounded number in flight.
  await Promise.all(Array.from({ length: CONCURRENT_CONNECTS }, worker));
  return failed;
}

function reply(message: ViewerReply): void {
  process.send?.(message);
}

process.on('message', (message: ViewerCommand) => {
  switch (message.cmd) {
    case 'connect':
      void connectAll(message).then((failed) => reply({ ok: 'connected', failed }));
      break;
    case 'reset':
      frames = bytes = sampledFrames = positions = lost = 0;
      latency = new Array<number>(LATENCY_BUCKETS + 1).fill(0);
      reply({ ok: 'reset' });
      break;
    case 'count':
      // Everything pending read first: the count must not depend on whose turn it was.
      for (const viewer of lazy) viewer.wake();
      setTimeout(() => reply({ ok: 'count', frames }), LAZY_TICK_MS);
      break;
    case 'report':
      reply({ ok: 'report', report: { frames, bytes, sampledFrames, positions, latencyMs: latency, open, lost } });
      break;
    case 'disconnect':
      for (const viewer of made.splice(Math.max(0, made.length - message.viewers))) viewer.terminate();
      reply({ ok: 'disconnected' });
      break;
    case 'close':
      for (const viewer of [...viewers]) viewer.terminate();
      reply({ ok: 'closed' });
      setTimeout(() => process.exit(0), 50);
      break;
  }
});
