import WebSocket from 'ws';
import { waitFor } from '@pitwall/testkit';

/** A message from the gateway, as JSON. */
export interface ServerMessage {
  type: string;
  [key: string]: unknown;
}

export interface WirePosition {
  device_id: string;
  label: string;
  ts: number;
  lat: number;
  lon: number;
  alt: number;
  speed: number;
  heading: number;
  sats: number;
  rx: number;
}

/** A real WebSocket client of /live (the `ws` package) that records everything it receives. */
export class TestClient {
  readonly messages: ServerMessage[] = [];
  /** Client-side errors (kept for failure messages). */
  readonly errors: string[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private closeInfo: { code: number; reason: string } | undefined;

  /** Wraps a socket (usually made by connect/open; directly for tests that act on 'open' themselves). */
  constructor(readonly socket: WebSocket) {
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) this.messages.push(JSON.parse(data.toString('utf8')) as ServerMessage);
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', (code: number, reason: Buffer) => {
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
      });
    });
    socket.on('error', (err: Error) => this.errors.push(err.message));
  }

  /** Opens /live on `baseUrl` (ws://host:port), with `access_token` in the query when given. */
  static connect(baseUrl: string, token?: string, options?: WebSocket.ClientOptions): Promise<TestClient> {
    return TestClient.open(token === undefined ? `${baseUrl}/live` : `${baseUrl}/live?access_token=${encodeURIComponent(token)}`, options);
  }

  /** Opens exactly this URL (options: e.g. `localAddress` 127.0.0.x to connect from another address, `origin`). */
  static async open(url: string, options?: WebSocket.ClientOptions): Promise<TestClient> {
    const client = new TestClient(new WebSocket(url, options));
    await new Promise<void>((resolve, reject) => {
      client.socket.once('open', () => resolve());
      client.socket.once('error', reject);
      client.socket.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
    });
    return client;
  }

  /** Connects and authenticates with an `auth` message; resolves once `auth ok` arrived. */
  static async authenticated(baseUrl: string, token: string, options?: WebSocket.ClientOptions): Promise<TestClient> {
    const client = await TestClient.connect(baseUrl, undefined, options);
    client.send({ type: 'auth', access_token: token, uid: 'auth-1' });
    await client.expect((m) => m.type === 'auth' && m.uid === 'auth-1', 'auth ok');
    return client;
  }

  get isClosed(): boolean {
    return this.closeInfo !== undefined;
  }

  send(message: unknown): void {
    this.socket.send(JSON.stringify(message));
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.socket.send(data, { binary });
  }

  /** The first message received so far (or later) that matches. */
  async expect(match: (m: ServerMessage) => boolean, what: string, timeoutMs = 10_000): Promise<ServerMessage> {
    try {
      return await waitFor(what, () => this.messages.find(match), { timeoutMs, intervalMs: 10 });
    } catch (err) {
      const last = this.messages.slice(-5).map((m) => JSON.stringify(m).slice(0, 300));
      const state = `${this.closeInfo === undefined ? 'open' : `closed ${JSON.stringify(this.closeInfo)}`}, errors ${JSON.stringify(this.errors)}`;
      throw new Error(`${(err as Error).message}; socket ${state}; last messages:\n${last.join('\n')}`, { cause: err });
    }
  }

  /** Sends a request and waits for the reply with its uid. */
  async request(message: Record<string, unknown>, timeoutMs = 10_000): Promise<ServerMessage> {
    const uid = `r-${Math.random().toString(36).slice(2)}`;
    this.send({ ...message, uid });
    return this.expect((m) => m.uid === uid, `reply to ${JSON.stringify(message)}`, timeoutMs);
  }

  /** Every position received in `positions` frames (optionally of one event), in order. */
  positions(eventId?: number): WirePosition[] {
    return this.messages
      .filter((m) => m.type === 'positions' && (eventId === undefined || m.event_id === eventId))
      .flatMap((m) => m.positions as WirePosition[]);
  }

  framesOf(type: string): ServerMessage[] {
    return this.messages.filter((m) => m.type === type);
  }

  /** Stops reading from the socket (the server's replies pile up on its side), or reads again. */
  setReading(reading: boolean): void {
    const raw = (this.socket as unknown as { _socket?: { pause(): void; resume(): void } })._socket;
    if (reading) raw?.resume();
    else raw?.pause();
  }

  async close(): Promise<void> {
    if (!this.isClosed) this.socket.close();
    await this.closed;
  }
}
