import type { WebSocket } from 'uWebSockets.js';
import type { SessionTransport } from '../session/session-transport.js';

/** A session's socket: a uWS WebSocket, used only while it is open (the session drops it on close). */
export class UwsTransport<T> implements SessionTransport {
  constructor(private readonly ws: WebSocket<T>) {}

  send(frame: string | Uint8Array): void {
    this.ws.send(frame, false);
  }

  bufferedAmount(): number {
    return this.ws.getBufferedAmount();
  }

  end(code: number, reason: string): void {
    this.ws.end(code, reason);
  }

  terminate(): void {
    this.ws.close();
  }

  subscribe(topic: string): void {
    this.ws.subscribe(topic);
  }

  unsubscribe(topic: string): void {
    this.ws.unsubscribe(topic);
  }

  cork(fn: () => void): void {
    this.ws.cork(fn);
  }
}
