import WebSocket from 'ws';
import { LATENCY_BUCKETS, type ViewerCommand, type ViewerReply } from './protocol.js';

// A process of many viewers (forked by the live-gateway suite, so the clients never share an event
// loop with the server they measure). It connects, subscribes, and for every position received
// records rx -> now in a 1 ms histogram. Frames are scanned, not parsed, to keep the client cheap:
// the count of `"rx":` fields is the position count and the digits after each are its rx.
// Socket.IO viewers speak the Socket.IO v5 / Engine.IO v4 wire protocol over the same `ws` client
// with the same scan, so all three servers are measured with equally cheap clients (the real
// socket.io-client parses every frame in full and would make the clients the bottleneck).

const RX = Buffer.from('"rx":');
const POSITIONS_PREFIX = Buffer.from('{"type":"positions"');
const SOCKET_IO_POSITIONS_PREFIX = Buffer.from('42["positions"');

let positions = 0;
let frames = 0;
let bytes = 0;
let latency = new Array<number>(LATENCY_BUCKETS + 1).fill(0);
const sockets: WebSocket[] = [];

function record(rx: number, now: number): void {
  const ms = Math.max(0, Math.min(LATENCY_BUCKETS, now - rx));
  latency[ms] = (latency[ms] ?? 0) + 1;
}

function onPositionsFrame(data: Buffer, prefix: Buffer): void {
  if (data.length < prefix.length || data.compare(prefix, 0, prefix.length, 0, prefix.length) !== 0) return;
  const now = Date.now();
  frames++;
  bytes += data.length;
  let at = data.indexOf(RX);
  while (at !== -1) {
    let i = at + RX.length;
    let rx = 0;
    for (let c = data[i]; c !== undefined && c >= 48 && c <= 57; c = data[++i]) rx = rx * 10 + (c - 48);
    record(rx, now);
    positions++;
    at = data.indexOf(RX, i);
  }
}

function connectLive(url: string, token: string | undefined, eventId: number): Promise<boolean> {
  return new Promise((resolve) => {
    const ws = new WebSocket(token === undefined ? url : `${url}?access_token=${encodeURIComponent(token)}`, {
      perMessageDeflate: false,
      skipUTF8Validation: true,
    });
    let subscribed = false;
    ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', event_id: eventId, uid: 's' })));
    ws.on('message', (data: Buffer) => {
      if (subscribed) {
        onPositionsFrame(data, POSITIONS_PREFIX);
        return;
      }
      const text = data.toString('utf8', 0, Math.min(data.length, 64));
      if (text.startsWith('{"type":"subscribed"')) {
        subscribed = true;
        resolve(true);
      } else if (text.startsWith('{"type":"error"')) {
        process.stderr.write(`viewer subscribe refused: ${data.toString('utf8', 0, 300)}\n`);
        resolve(false);
      }
    });
    ws.on('error', () => resolve(false));
    ws.on('close', () => resolve(false));
    sockets.push(ws);
  });
}

/** Engine.IO: `0` open, `2` ping / `3` pong, `4` message; Socket.IO inside: `0` connect, `2` event, `3` ack. */
function connectSocketIo(url: string, eventId: number): Promise<boolean> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, {
      perMessageDeflate: false,
      skipUTF8Validation: true,
    });
    let subscribed = false;
    ws.on('message', (data: Buffer) => {
      if (subscribed) {
        if (data.length === 1 && data[0] === 0x32) ws.send('3');
        else onPositionsFrame(data, SOCKET_IO_POSITIONS_PREFIX);
        return;
      }
      const text = data.toString('utf8');
      if (text.startsWith('0{')) ws.send('40');
      else if (text.startsWith('40')) ws.send(`420["subscribe",${eventId}]`);
      else if (text.startsWith('430')) {
        subscribed = true;
        resolve(true);
      } else if (text === '2') ws.send('3');
    });
    ws.on('error', () => resolve(false));
    ws.on('close', () => resolve(false));
    sockets.push(ws);
  });
}

async function connectAll(command: Extract<ViewerCommand, { cmd: 'connect' }>): Promise<number> {
  let failed = 0;
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < command.viewers; i = next++) {
      const eventId = command.events[(command.offset + i) % command.events.length] ?? 1;
      const ok =
        command.kind === 'socketio' ? await connectSocketIo(command.url, eventId) : await connectLive(command.url, command.token, eventId);
      if (!ok) failed++;
    }
  };
  // Connection storms are not what is measured: a bounded number in flight.
  await Promise.all(Array.from({ length: 50 }, worker));
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
      positions = frames = bytes = 0;
      latency = new Array<number>(LATENCY_BUCKETS + 1).fill(0);
      reply({ ok: 'reset' });
      break;
    case 'report':
      reply({ ok: 'report', report: { positions, frames, bytes, latencyMs: latency } });
      break;
    case 'close':
      for (const socket of sockets) socket.terminate();
      reply({ ok: 'closed' });
      setTimeout(() => process.exit(0), 50);
      break;
  }
});
