import { createServer } from 'node:http';
import { createAdapter } from '@socket.io/redis-streams-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { feedConfigFromEnv, feedStats, startFeed } from './feed.js';

// Baseline (b), the usual Node choice: Socket.IO with @socket.io/redis-streams-adapter (so it scales
// across pods like the gateway), one room per event, the same feed, and per event per window one
// `io.to(room).emit('positions', {event_id, positions})` of plain objects. GET /stats: frames published.

const config = feedConfigFromEnv();
const http = createServer();
const io = new Server(http, {
  adapter: createAdapter(new Redis(config.redisUrl), { streamName: `${config.streamKey}:socket.io` }),
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
});
io.on('connection', (socket) => {
  socket.on('subscribe', (eventId: number, ack: () => void) => {
    void socket.join(`event/${eventId}`);
    ack();
  });
});
const feed = startFeed(
  config,
  (position, device) => ({
    device_id: device.imei,
    label: device.label,
    ts: Number(position.recordedAtMs),
    lat: position.latE7 / 1e7,
    lon: position.lonE7 / 1e7,
    alt: position.altitudeM,
    speed: position.speedKmh,
    heading: position.headingDeg,
    sats: position.satellites,
    rx: Number(position.receivedAtMs),
  }),
  (eventId, positions) => {
    io.to(`event/${eventId}`).emit('positions', { event_id: eventId, positions });
  },
);
// Socket.IO answers its own path; every other request reaches this listener.
http.on('request', (req, res) => {
  if (req.url === '/stats') res.end(feedStats(feed));
});
http.listen(config.port, '127.0.0.1', () => process.stdout.write(`listening ${config.port}\n`));
