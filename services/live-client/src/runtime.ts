// What the client needs of its runtime, typed here so that it compiles without DOM or Node types and
// runs on both: a browser's WebSocket (or Node 22's), the `ws` package's on Node 20, a fake in tests.

/** The part of the WHATWG WebSocket the client uses. */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** Opens a socket to `url` (a browser's `new WebSocket(url)`). */
export type SocketFactory = (url: string) => SocketLike;

/** WebSocket readyState OPEN. */
export const SOCKET_OPEN = 1;

/** Timers and time; a test passes a scripted one. */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

interface TimerGlobals {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  WebSocket?: new (url: string) => SocketLike;
}

const runtime = globalThis as unknown as TimerGlobals;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => runtime.setTimeout(callback, ms),
  clearTimeout: (handle) => runtime.clearTimeout(handle),
};

/** The runtime's own WebSocket (browsers, Node >= 22); undefined on Node 20 (pass `ws` there). */
export function globalSocketFactory(): SocketFactory | undefined {
  const WebSocketImpl = runtime.WebSocket;
  return WebSocketImpl === undefined ? undefined : (url) => new WebSocketImpl(url);
}
