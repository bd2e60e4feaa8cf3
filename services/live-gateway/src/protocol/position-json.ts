import type { Position } from '@pitwall/contract';
import type { EntryId } from '../history/entry-id.js';

/**
 * A position as the gateway keeps it: the label-independent part of its JSON is built once when it
 * is read from the stream; only `device_id` and `label` (which depends on the event) are prepended
 * per event it is shown in.
 */
export interface LivePosition {
  deviceId: string;
  /** Device GNSS time, ms. */
  ts: number;
  /** Ingestion receive time, ms. */
  rx: number;
  /** `"ts":..,"lat":..,...,"rx":..}`: the JSON object after device_id and label. */
  body: string;
  /** W3C traceparent of a sampled position (the entry's `tp`): its publish continues that trace. */
  traceparent?: string | undefined;
  /** The stream it was read from (a cursor source: 0..shards-1 the shard streams) and its entry id there. */
  source?: number | undefined;
  id?: EntryId | undefined;
}

export function toLivePosition(position: Position): LivePosition {
  const ts = Number(position.recordedAtMs);
  const rx = Number(position.receivedAtMs);
  const body =
    `"ts":${ts},"lat":${position.latE7 / 1e7},"lon":${position.lonE7 / 1e7},"alt":${position.altitudeM},` +
    `"speed":${position.speedKmh},"heading":${position.headingDeg},"sats":${position.satellites},"rx":${rx}}`;
  return { deviceId: position.deviceId, ts, rx, body: flatString(body), traceparent: undefined };
}

/**
 * The same text as one flat string. V8 keeps a string built by concatenation as a tree of its parts
 * (about 580 bytes for a position body instead of about 140, measured with --expose-gc); the
 * latest-position cache and the history keep bodies for minutes. Reading a character flattens it.
 */
export function flatString(text: string): string {
  text.charCodeAt(0);
  return text;
}

/** `{"device_id":..,"label":..,` for one device in one event: built when the event's entries are read. */
export function positionPrefix(deviceId: string, label: string): string {
  return `{"device_id":${JSON.stringify(deviceId)},"label":${JSON.stringify(label)},`;
}
