import type { SessionTransport } from '../session/session-transport.js';

/** What the hub needs of a client (a ClientSession): its socket, and a way to ask it to go. */
export interface HubClient {
  readonly id: number;
  /** Its socket while open; undefined once closed. */
  readonly transport: SessionTransport | undefined;
  /** The hub gives up on a client that stays behind: the client ends its connection itself. */
  disconnect(name: 'slow'): void;
}
