/** What the gateway-floor suite asks its raw reader process (raw-reader.ts) over IPC. */
export type RawReaderMessage = { cmd: 'count' } | { cmd: 'close' };

export type RawReaderReply = { ok: 'ready' } | { ok: 'count'; read: number };
