import { createPosition, decodePosition, deviceShardKey, encodePosition, POSITION_FIELD } from '@pitwall/contract';
import { Redis } from 'ioredis';
import type { BenchDevice } from './feed.js';

// The positions every live-gateway benchmark feeds its servers: appended to the Redis stream shards
// like ingestion does (rx = now), at a steady rate, devices in turn.

function varint(out: number[], value: number): void {
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/**
 * The producer's Position encoder: the few fields a live position has, written by hand, because
 * protobuf-es's generic encoder costs ~20 us a position and the producer must not be what limits
 * a 10k/s run on two cores. Checked against the contract's encoder before every run.
 */
export function encodeLivePosition(deviceId: string, ts: number, rx: number, latE7: number, lonE7: number): Buffer {
  const out: number[] = [0x0a, deviceId.length];
  for (let i = 0; i < deviceId.length; i++) out.push(deviceId.charCodeAt(i));
  const zigzag = (n: number) => (n >= 0 ? n * 2 : -n * 2 - 1);
  out.push(0x10);
  varint(out, ts);
  out.push(0x18);
  varint(out, rx);
  out.push(0x20);
  varint(out, zigzag(latE7));
  out.push(0x28);
  varint(out, zigzag(lonE7));
  out.push(0x30, 120 * 2, 0x01, 0x38, 88, 0x40);
  varint(out, 271);
  out.push(0x48, 11);
  return Buffer.from(out);
}

export function checkEncoder(): void {
  const fast = encodeLivePosition('356307040000001', 1_764_000_000_123, 1_764_000_000_456, 546_872_000, -252_797_000);
  const reference = createPosition({
    deviceId: '356307040000001',
    recordedAtMs: 1_764_000_000_123n,
    receivedAtMs: 1_764_000_000_456n,
    latE7: 546_872_000,
    lonE7: -252_797_000,
    altitudeM: 120,
    speedKmh: 88,
    headingDeg: 271,
    satellites: 11,
  });
  if (!fast.equals(Buffer.from(encodePosition(reference))) || decodePosition(fast).lonE7 !== reference.lonE7) {
    throw new Error('the bench producer encodes Positions differently from the contract');
  }
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
