import { Codec, deviceIdField, deviceShardKey, encodePositions, POSITION_FIELD, type PositionInput } from '@pitwall/contract';
import { Redis } from 'ioredis';
import type { BenchDevice } from './feed.js';

// The positions every live-gateway benchmark feeds its servers: appended to the Redis stream shards
// like ingestion does (rx = now), at a steady rate, devices in turn.

/** The fields every live position of the producer has besides time and place (encodePositions' input, reused). */
const record: PositionInput = {
  timestampMs: 0,
  priority: 0,
  latE7: 0,
  lonE7: 0,
  altitudeM: 120,
  headingDeg: 271,
  satellites: 11,
  speedKmh: 88,
  eventIoId: 0,
  generationType: undefined,
  io: [],
};
const records = [record];
const idFields = new Map<string, Buffer>();

/**
 * The producer's Position encoder: the contract's fast encoder (protobuf-es's generic one costs
 * ~20 us a position, and the producer must not be what limits a 10k/s run on two cores), its bytes
 * pinned to the schema by contract/test/position-wire.test.ts.
 */
export function encodeLivePosition(deviceId: string, ts: number, rx: number, latE7: number, lonE7: number): Buffer {
  let idField = idFields.get(deviceId);
  if (idField === undefined) {
    idField = deviceIdField(deviceId);
    idFields.set(deviceId, idField);
  }
  record.timestampMs = ts;
  record.latE7 = latE7;
  record.lonE7 = lonE7;
  return encodePositions(idField, rx, Codec.CODEC_8_EXTENDED, records)[0] as Buffer;
}

/**
 * Devices reordered so that consecutive ones are in different events (event A's first, event B's
 * first, ..., event A's second, ...): a steady rate then gives every event a steady share, so each
 * event's batch window holds about the same number of positions.
 */
export function interleaveByEvent(devices: readonly BenchDevice[]): BenchDevice[] {
  const byEvent = new Map<number, BenchDevice[]>();
  for (const device of devices) byEvent.set(device.event, [...(byEvent.get(device.event) ?? []), device]);
  const lists = [...byEvent.values()];
  const out: BenchDevice[] = [];
  for (let i = 0; out.length < devices.length; i++) for (const list of lists) if (list[i] !== undefined) out.push(list[i] as BenchDevice);
  return out;
}

/** The producer appends what is due this often: each wake-up costs the load generator's CPU. */
const TICK_MS = 20;
/** Approximate length each shard is trimmed to (MAXLEN ~). */
const STREAM_CAP = 100_000;
/** KEYS[1] the shard; ARGV: the field, the cap, then one payload per entry. Returns the entries added. */
const APPEND_SCRIPT = `for i = 3, #ARGV do redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', ARGV[1], ARGV[i]) end
return #ARGV - 2`;

/**
 * Appends positions at `perSecond` (rx = now), devices round-robin, until the returned function is
 * called; it resolves, once every append is confirmed, with how many positions were appended.
 */
export function startProducer(
  redisUrl: string,
  streamKey: string,
  shards: number,
  devices: readonly BenchDevice[],
  perSecond: number,
): () => Promise<number> {
  // One script call per shard per tick appends that tick's entries (the same XADDs ingestion makes,
  // one entry per position): a client-side command per position cost the generator more CPU than
  // the appends themselves.
  const redis = new Redis(redisUrl);
  const append = (key: string, payloads: Buffer[]) =>
    redis.eval(APPEND_SCRIPT, 1, key, POSITION_FIELD, String(STREAM_CAP), ...payloads) as Promise<number>;
  const started = Date.now();
  let sent = 0;
  let next = 0;
  let inFlight: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    if (inFlight !== undefined || devices.length === 0) return;
    const due = Math.floor(((Date.now() - started) / 1000) * perSecond) - sent;
    if (due <= 0) return;
    const now = Date.now();
    const byShard = new Map<string, Buffer[]>();
    for (let i = 0; i < due; i++) {
      const device = devices[next++ % devices.length] as BenchDevice;
      const key = deviceShardKey(streamKey, shards, device.imei);
      let payloads = byShard.get(key);
      if (payloads === undefined) byShard.set(key, (payloads = []));
      payloads.push(encodeLivePosition(device.imei, now, now, 546_872_000 + (next % 1000), 252_797_000));
    }
    sent += due;
    inFlight = Promise.all([...byShard].map(([key, payloads]) => append(key, payloads))).finally(() => (inFlight = undefined));
  }, TICK_MS);
  return async () => {
    clearInterval(timer);
    await inFlight;
    await redis.quit();
    return sent;
  };
}
