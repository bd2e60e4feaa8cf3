/** A stream entry that is not a valid Position. Code `STREAM_ENTRY_INVALID`. */
export class StreamEntryError extends Error {
  readonly code = 'STREAM_ENTRY_INVALID';
  override readonly name = 'StreamEntryError';
}
