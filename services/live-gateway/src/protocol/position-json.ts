import type { Position, PositionReader } from '@pitwall/contract';
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
  readonly body: string;
  /** W3C traceparent of a sampled position (the entry's `tp`): its publish continues that trace. */
  traceparent?: string | undefined;
  /** The stream it was read from (a cursor source: 0..shards-1 the shard streams) and its entry id there. */
  source?: number | undefined;
  id?: EntryId | undefined;
}

export function toLivePosition(position: Position): LivePosition {
  const ts = Number(position.recordedAtMs);
  const rx = Number(position.receivedAtMs);
  const { latE7, lonE7, altitudeM, speedKmh, headingDeg, satellites } = position;
  return {
    deviceId: position.deviceId,
    ts,
    rx,
    body: positionBody(ts, latE7, lonE7, altitudeM, speedKmh, headingDeg, satellites, rx),
    traceparent: undefined,
  };
}

/** The label-independent JSON of a position, as one flat string. */
function positionBody(
  ts: number,
  latE7: number,
  lonE7: number,
  altitudeM: number,
  speedKmh: number,
  headingDeg: number,
  satellites: number,
  rx: number,
): string {
  return flatString(
    `"ts":${ts},"lat":${latE7 / 1e7},"lon":${lonE7 / 1e7},"alt":${altitudeM},` +
      `"speed":${speedKmh},"heading":${headingDeg},"sats":${satellites},"rx":${rx}}`,
  );
}

/**
 * A position read in place from its stream entry (readLivePosition). Its body is made the first time
 * something shows it (a frame of a watched event, a snapshot, a trail, a resume) and kept from then:
 * most positions a pod reads are never shown (nobody watches their event on it) and never pay for
 * the text; the numbers it is made from take less memory than the text.
 */
export class ReadPosition implements LivePosition {
  traceparent: string | undefined = undefined;
  source: number | undefined = undefined;
  id: EntryId | undefined = undefined;
  private text: string | undefined = undefined;

  constructor(
    readonly deviceId: string,
    readonly ts: number,
    readonly rx: number,
    private readonly latE7: number,
    private readonly lonE7: number,
    private readonly altitudeM: number,
    private readonly speedKmh: number,
    private readonly headingDeg: number,
    private readonly satellites: number,
  ) {}

  get body(): string {
    return (this.text ??= positionBody(
      this.ts,
      this.latE7,
      this.lonE7,
      this.altitudeM,
      this.speedKmh,
      this.headingDeg,
      this.satellites,
      this.rx,
    ));
  }
}

/**
 * The Position in bytes[start, end) (field `p` of an entry, e.g. inside a whole stream reply), read
 * in place by `reader`; undefined when the reader does not take it (anything but the plain case):
 * then decode it with decodeEntryFields, which yields the same position or the precise error.
 */
export function readLivePosition(reader: PositionReader, bytes: Buffer, start: number, end: number): ReadPosition | undefined {
  if (!reader.read(bytes, start, end)) return undefined;
  return new ReadPosition(
    bytes.toString('utf8', reader.deviceIdStart, reader.deviceIdEnd),
    reader.recordedAtMs,
    reader.receivedAtMs,
    reader.latE7,
    reader.lonE7,
    reader.altitudeM,
    reader.speedKmh,
    reader.headingDeg,
    reader.satellites,
  );
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
