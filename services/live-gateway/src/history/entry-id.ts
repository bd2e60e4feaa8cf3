/**
 * A Redis stream entry id `<ms>-<seq>` as two numbers, so that ids compare without parsing strings on the
 * hot path. Entry ids are the same on every gateway pod: they are what cursors are made of.
 */
export interface EntryId {
  readonly ms: number;
  readonly seq: number;
}

export const ZERO_ID: EntryId = { ms: 0, seq: 0 };

const ID_PATTERN = /^(\d{1,15})-(\d{1,15})$/;

/** Parses `<ms>-<seq>`; undefined for anything else. */
export function parseEntryId(text: string): EntryId | undefined {
  const match = ID_PATTERN.exec(text);
  if (match === null) return undefined;
  return { ms: Number(match[1]), seq: Number(match[2]) };
}

export function formatEntryId(id: EntryId): string {
  return `${id.ms}-${id.seq}`;
}

/** Negative when a < b, 0 when equal, positive when a > b. */
export function compareIds(a: EntryId, b: EntryId): number {
  return a.ms !== b.ms ? a.ms - b.ms : a.seq - b.seq;
}
