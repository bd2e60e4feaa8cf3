import { eventTopic, positionPrefix, positionsMessage, toLivePosition } from '@pitwall/live-gateway';
import type { SubscribedMessage } from '@pitwall/live-protocol';
import uWS from 'uWebSockets.js';
import { feedConfigFromEnv, feedStats, startFeed } from './feed.js';

// Baseline (a), the ceiling: a bare uWebSockets.js publish loop. The same feed, the same JSON frames
// (the gateway's own builders) built once per event per window and published to one topic per event
// (the gateway's topic names), but no authentication,
// authorization, snapshot, conflation or metrics. A client's `subscribe` joins the topic at once.
// GET /stats: frames published so far.

const config = feedConfigFromEnv();
const app = uWS.App();
app.ws<{ id: number }>('/live', {
  maxPayloadLength: 16 * 1024,
  maxBackpressure: 4 * 1024 * 1024,
  idleTimeout: 60,
  message: (ws, message) => {
    const request = JSON.parse(Buffer.from(message).toString('utf8')) as { type?: string; event_id?: number; uid?: string };
    if (request.type === 'subscribe' && typeof request.event_id === 'number') {
      ws.subscribe(eventTopic(request.event_id));
      const reply: SubscribedMessage = { type: 'subscribed', event_id: request.event_id, uid: request.uid, snapshot: [] };
      ws.send(JSON.stringify(reply));
    }
  },
});
const feed = startFeed(
  config,
  (position, device) => positionPrefix(device.imei, device.label) + toLivePosition(position).body,
  (eventId, parts) => {
    app.publish(eventTopic(eventId), positionsMessage(eventId, parts, '1.1._'), false);
  },
);
app.get('/stats', (res) => void res.end(feedStats(feed)));
app.listen('127.0.0.1', config.port, (socket) => {
  if (socket === false) throw new Error(`cannot listen on ${config.port}`);
  process.stdout.write(`listening ${config.port}\n`);
});
