/**
 * What a client session needs of its socket. The uWS adapter implements it over a uWS WebSocket; tests
 * implement it over an array, so the session logic runs without a socket.
 */
export interface SessionTransport {
  send(frame: string | Uint8Array): void;
  /** Bytes queued for this client that the kernel has not taken yet (what it is not reading). */
  bufferedAmount(): number;
  /** Sends a close frame and closes. */
  end(code: number, reason: string): void;
  /** Drops the connection without a close frame. */
  terminate(): void;
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  /** Runs `fn` with its sends written together. */
  cork(fn: () => void): void;
}
