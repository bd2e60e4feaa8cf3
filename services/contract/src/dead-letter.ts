// Entries of the dead-letter stream (deadLetterKey): who may write what, and how large it may be.

/** Reason of a position ingestion acknowledged but did not store: its device time is too far ahead of the server clock. */
export const FUTURE_TIMESTAMP_REASON = 'future_timestamp';

/**
 * Most bytes of an original entry (field values together) a dead-letter entry keeps; the rest is
 * cut off. With the stream's approximate MAXLEN this bounds the dead-letter stream in bytes.
 */
export const DEAD_LETTER_ORIGINAL_MAX_BYTES = 4096;

/** Field of a dead-letter entry that says why it is there. */
export const DEAD_LETTER_REASON_FIELD = 'reason';

/** Prefix of the fields that keep the original entry's fields (`orig.p`, `orig.tp`). */
export const DEAD_LETTER_ORIGINAL_PREFIX = 'orig.';
