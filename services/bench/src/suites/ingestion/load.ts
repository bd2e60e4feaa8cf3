import { connect, createServer, type Socket } from 'node:net';
import { positionCodec, PositionStore } from '@pitwall/ingestion';
import { Histogram, createMetricsRegistry } from '@pitwall/platform';
import { startSimulation, simulatorImei } from '@pitwall/simulator';
import { CODEC_8_EXTENDED, encodeImeiHandshake, encodeTcpAck, encodeTcpAvlPacket, type AvlRecord } from '@pitwall/teltonika';
import { deviceIdField, encodePositions } from '@pitwall/contract';
import { Redis } from 'ioredis';

// Load generator of the ingestion suite, run as its own process so the client never competes with
// the measured process for its core. `node load.js '<json options>'`; prints one JSON result line.
//   flood  1,000+ TCP devices, each sending packets of N records back to back (next on each ack)
//   fleet  the simulator's devices at a realistic rate, for the acknowledgement latency
//   xadd   the baseline: raw pipelined XADD MAXLEN ~ of the same Position bytes with ioredis (closed
//          loop or paced): also what ingestion did before the admission script
//   echo   the floor of any Node server at one packet per read: answers the handshake, then every
//          read with a one-record acknowledgement (no decoding, no Redis); reports its own CPU
//   admit  the admission script alone (ingestion's PositionStore: a turn's packets in one EVALSHA), same entries

export interface LoadResult {
  records: number;
  seconds: number;
  rate: number;
  p50Ms: number;
  p99Ms: number;
  samples: number;
  /** CPU seconds (user + system) this load process used in the measured window (xadd/admit: the raw client's cost). */
  cpuSeconds: number;
}

type Options =
  | { mode: 'flood'; port: number; devices: number; recordsPerPacket: number; warmupMs: number; durationMs: number; firstIndex: number }
  | { mode: 'fleet'; port: number; devices: number; rate: number; warmupMs: number; durationMs: number; firstIndex: number }
  | { mode: 'echo'; port: number; warmupMs: number; durationMs: number }
  | {
      mode: 'xadd' | 'admit';
      redisUrl: string;
      key: string;
      maxLen: number;
      recordsPerPacket: number;
      concurrency: number;
      /** Pipelines per second (paced, open loop); 0 = as fast as the concurrency allows. */
      pipelinesPerSecond: number;
      warmupMs: number;
      durationMs: number;
    };

/** A race-car record as the simulator sends it (Codec 8 Extended, six IO elements). */
function benchRecord(i: number): AvlRecord {
  return {
    timestampMs: 1_760_000_000_000 + i * 100,
    priority: 0,
    latE7: 504_372_000 + i * 37,
    lonE7: 59_714_000 - i * 41,
    altitudeM: 412,
    headingDeg: (i * 7) % 360,
    satellites: 12,
    speedKmh: 180 + (i % 120),
    eventIoId: 0,
    generationType: undefined,
    io: [
      { id: 239, width: 1, value: 1n, raw: undefined },
      { id: 240, width: 1, value: 1n, raw: undefined },
      { id: 21, width: 1, value: 4n, raw: undefined },
      { id: 24, width: 2, value: BigInt(180 + (i % 120)), raw: undefined },
      { id: 66, width: 2, value: 13_650n, raw: undefined },
      { id: 16, width: 4, value: BigInt(1_000_000 + i * 50), raw: undefined },
    ],
  };
}

class Samples {
  private data = new Float64Array(1 << 20);
  private count = 0;
  add(value: number): void {
    this.data[this.count++ & (this.data.length - 1)] = value;
  }
  percentiles(): { p50: number; p99: number; samples: number } {
    const n = Math.min(this.count, this.data.length);
    const sorted = this.data.slice(0, n).sort();
    return { p50: sorted[Math.floor(n * 0.5)] ?? 0, p99: sorted[Math.floor(n * 0.99)] ?? 0, samples: n };
  }
}

function result(records: number, ms: number, samples: Samples, cpuSeconds = 0): LoadResult {
  const { p50, p99, samples: n } = samples.percentiles();
  return { records, seconds: ms / 1000, rate: records / (ms / 1000), p50Ms: p50, p99Ms: p99, samples: n, cpuSeconds };
}

function cpuSecondsNow(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** Runs `measure` windows: counting starts after warmup and stops after duration. */
function window(warmupMs: number, durationMs: number): { measuring: () => boolean; done: Promise<number>; cpuSeconds: () => number } {
  let start = 0;
  let cpuStart = 0;
  let cpu = 0;
  let measuring = false;
  const done = new Promise<number>((resolve) => {
    setTimeout(() => {
      measuring = true;
      start = performance.now();
      cpuStart = cpuSecondsNow();
      setTimeout(() => {
        measuring = false;
        cpu = cpuSecondsNow() - cpuStart;
        resolve(performance.now() - start);
      }, durationMs);
    }, warmupMs);
  });
  return { measuring: () => measuring, done, cpuSeconds: () => cpu };
}

async function flood(o: Extract<Options, { mode: 'flood' }>): Promise<LoadResult> {
  const variants = Array.from({ length: 8 }, (_, v) =>
    encodeTcpAvlPacket(
      CODEC_8_EXTENDED,
      Array.from({ length: o.recordsPerPacket }, (_, i) => benchRecord(v * o.recordsPerPacket + i)),
    ),
  );
  const samples = new Samples();
  let measuring = false;
  let records = 0;
  let stop = false;
  let connected = 0;
  let allConnected: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (allConnected = resolve));
  const sockets: Socket[] = [];
  // Every device completes its handshake before any floods. Node (libuv >= 1.45) accepts one
  // connection per event-loop iteration, so a saturated ingestion admits new devices slowly: devices
  // that flood from their first millisecond would measure admission, not throughput.
  const starters: (() => void)[] = [];
  const open = (d: number) => {
    const socket = connect({ port: o.port, host: '127.0.0.1', noDelay: true });
    let handshaken = false;
    let sentAt = 0;
    let pending = 0; // bytes of an acknowledgement received so far
    let n = d;
    const sendNext = () => {
      sentAt = performance.now();
      socket.write(variants[n++ & 7] ?? Buffer.alloc(0));
    };
    socket.on('connect', () => socket.write(encodeImeiHandshake(simulatorImei(o.firstIndex + d))));
    socket.on('data', (chunk: Buffer) => {
      let bytes = chunk.length;
      if (!handshaken) {
        handshaken = true;
        bytes--;
        starters.push(sendNext);
        if (++connected === o.devices) {
          for (const start of starters) start();
          allConnected();
        }
      }
      pending += bytes;
      while (pending >= 4) {
        pending -= 4;
        if (measuring) {
          records += o.recordsPerPacket;
          samples.add(performance.now() - sentAt);
        }
        if (!stop) sendNext();
      }
    });
    socket.on('error', (err) => {
      process.stderr.write(`device ${d}: ${err.message}\n`);
    });
    sockets.push(socket);
  };
  // Connect in waves (a real fleet does not open 1,000 sockets in the same millisecond), then measure.
  for (let d = 0; d < o.devices; d++) {
    open(d);
    if (d % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const timeout = setTimeout(() => {
    process.stderr.write(`only ${connected} of ${o.devices} devices completed the handshake\n`);
    process.exit(1);
  }, 60_000);
  await ready;
  clearTimeout(timeout);
  await new Promise((resolve) => setTimeout(resolve, o.warmupMs));
  measuring = true;
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, o.durationMs));
  measuring = false;
  const ms = performance.now() - started;
  stop = true;
  for (const socket of sockets) socket.destroy();
  return result(records, ms, samples);
}

async function fleet(o: Extract<Options, { mode: 'fleet' }>): Promise<LoadResult> {
  const samples = new Samples();
  const clock = window(o.warmupMs, o.durationMs);
  let records = 0;
  const simulation = startSimulation({
    port: o.port,
    devices: o.devices,
    rate: o.rate,
    firstIndex: o.firstIndex,
    trackAcked: false,
    tickMs: 5,
    onAcknowledged: (_imei, n, latencyMs) => {
      if (!clock.measuring()) return;
      records += n;
      samples.add(latencyMs);
    },
  });
  const ms = await clock.done;
  await simulation.stop();
  return result(records, ms, samples);
}

async function xadd(o: Extract<Options, { mode: 'xadd' | 'admit' }>): Promise<LoadResult> {
  const redis = new Redis(o.redisUrl);
  const entries = Array.from({ length: 8 }, (_, v) =>
    encodePositions(
      deviceIdField(simulatorImei(v)),
      Date.now(),
      positionCodec(CODEC_8_EXTENDED),
      Array.from({ length: o.recordsPerPacket }, (_, i) => benchRecord(v * o.recordsPerPacket + i)),
    ),
  );
  const maxLen = String(o.maxLen);
  // Admission: the cap is maxLen (the processor group's backlog), nothing trimmed; the live-only key shares the hash tag.
  const store =
    o.mode === 'admit'
      ? new PositionStore(
          redis,
          { streamMaxLen: o.maxLen, liveMaxLen: 10_000, deadLetterKey: `${o.key}:dead-letter`, deadLetterMaxLen: 10_000 },
          new Histogram({ name: 'bench_admission_seconds', help: 'admission round trip', registers: [createMetricsRegistry()] }),
        )
      : undefined;
  const liveKey = o.key.replace(/:\{/, ':live:{');
  const samples = new Samples();
  const clock = window(o.warmupMs, o.durationMs);
  let records = 0;
  let stop = false;
  let n = 0;
  const one = async () => {
    const batch = entries[n++ & 7] ?? [];
    const started = performance.now();
    if (store !== undefined) {
      const admission = await store.append(o.key, liveKey, batch);
      if (!admission.admitted) throw new Error(`not admitted: backlog ${admission.backlog} at cap ${o.maxLen}`);
    } else {
      const pipeline = redis.pipeline();
      for (const entry of batch) pipeline.xadd(o.key, 'MAXLEN', '~', maxLen, '*', 'p', entry);
      const replies = (await pipeline.exec()) ?? [];
      for (const [err] of replies) if (err) throw err;
    }
    if (clock.measuring()) {
      records += batch.length;
      samples.add(performance.now() - started);
    }
  };
  void clock.done.then(() => (stop = true));
  if (o.pipelinesPerSecond > 0) {
    const inflight = new Set<Promise<void>>();
    const intervalMs = 1000 / o.pipelinesPerSecond;
    let next = performance.now();
    while (!stop) {
      const wait = next - performance.now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
      next += intervalMs;
      const p: Promise<void> = one().finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await Promise.all(inflight);
  } else {
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (!stop) await one();
      }),
    );
  }
  const ms = await clock.done;
  await redis.quit();
  return result(records, ms, samples, clock.cpuSeconds());
}

/** A bare TCP server acknowledging one record per read: what the kernel and Node charge per packet at 1 Hz. */
async function echo(o: Extract<Options, { mode: 'echo' }>): Promise<LoadResult> {
  const accepted = Buffer.from([0x01]);
  const ack = encodeTcpAck(1);
  let records = 0;
  let measuring = false;
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    let handshaken = false;
    socket.on('data', () => {
      if (!handshaken) {
        handshaken = true;
        socket.write(accepted);
        return;
      }
      if (measuring) records++;
      socket.write(ack);
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(o.port, '127.0.0.1', resolve));
  process.stdout.write('LISTENING\n');
  await new Promise((resolve) => setTimeout(resolve, o.warmupMs));
  measuring = true;
  const started = performance.now();
  const cpu0 = cpuSecondsNow();
  await new Promise((resolve) => setTimeout(resolve, o.durationMs));
  measuring = false;
  const cpu = cpuSecondsNow() - cpu0;
  const ms = performance.now() - started;
  server.close();
  return result(records, ms, new Samples(), cpu);
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as Options;
  const outcome =
    options.mode === 'flood'
      ? await flood(options)
      : options.mode === 'fleet'
        ? await fleet(options)
        : options.mode === 'echo'
          ? await echo(options)
          : await xadd(options);
  process.stdout.write(`RESULT ${JSON.stringify(outcome)}\n`);
  process.exit(0);
}

await main();
