import WebSocket from 'ws';
import { waitFor } from '@pitwall/testkit';

export interface LivePosition {
  device_id: string;
  label: string;
  ts: number;
  lat: number;
  lon: number;
  rx: number;
}

export interface ServerMessage {
  type: string;
  event_id?: number;
  uid?: string;
  code?: string;
  status?: string;
  reason?: string;
  snapshot?: LivePosition[];
  positions?: LivePosition[];
  history?: LivePosition[];
  recovered?: boolean;
  cursor?: string;
}

/** A viewer on the gateway's /live protocol, recording everything it receives. */
export class LiveClient {
  readonly messages: ServerMessage[] = [];
  /** Positions pushed (not snapshots), in arrival order, with the event they came for. */
  readonly pushed: { eventId: number; position: LivePosition; at: number }[] = [];
  closed: { code: number; reason: string } | undefined;
  private uid = 0;

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString('utf8')) as ServerMessage;
      this.messages.push(message);
      if (message.type === 'positions' && message.event_id !== undefined) {
        for (const position of message.positions ?? []) this.pushed.push({ eventId: message.event_id, position, at: Date.now() });
      }
    });
    socket.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString('utf8') };
    });
    socket.on('error', () => undefined);
  }

  /** Connects and authenticates with a Directus access token (first-message auth). */
  static async connect(url: string, accessToken: string): Promise<LiveClient> {
    const socket = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    const client = new LiveClient(socket);
    socket.send(JSON.stringify({ type: 'auth', access_token: accessToken }));
    await client.next((m) => m.type === 'auth' && m.status === 'ok', 'auth ok');
    return client;
  }

  /** Sends subscribe (with `since` / `history_seconds` when given) and resolves with the reply: `subscribed` or an `error`. */
  async subscribe(eventId: number, extra: { since?: string; history_seconds?: number } = {}): Promise<ServerMessage> {
    const uid = `s${++this.uid}`;
    const from = this.messages.length;
    this.socket.send(JSON.stringify({ type: 'subscribe', event_id: eventId, uid, ...extra }));
    return this.next((m) => m.uid === uid && (m.type === 'subscribed' || m.type === 'error'), `reply to subscribe ${eventId}`, from);
  }

  /** Positions pushed for `eventId` after message index `since` (see mark()). */
  positionsSince(mark: number, eventId?: number): LivePosition[] {
    return this.pushed
      .slice(mark)
      .filter((p) => eventId === undefined || p.eventId === eventId)
      .map((p) => p.position);
  }

  /** A mark for positionsSince. */
  mark(): number {
    return this.pushed.length;
  }

  /** Waits until `count` more positions (of `eventId`) arrived after `mark`. */
  async waitForPositions(mark: number, count: number, eventId?: number, timeoutMs = 30_000): Promise<LivePosition[]> {
    return waitFor(
      `${count} positions after mark ${mark}`,
      () => {
        const got = this.positionsSince(mark, eventId);
        return got.length >= count ? got : undefined;
      },
      { timeoutMs },
    );
  }

  next(predicate: (m: ServerMessage) => boolean, what: string, from = 0, timeoutMs = 20_000): Promise<ServerMessage> {
    return waitFor(
      what,
      () => {
        if (this.closed) throw new Error(`socket closed ${this.closed.code} ${this.closed.reason} while waiting for ${what}`);
        return this.messages.slice(from).find(predicate);
      },
      { timeoutMs },
    );
  }

  close(): void {
    this.socket.close(1000);
  }
}
