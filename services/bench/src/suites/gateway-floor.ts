import { loadavg } from 'node:os';
import { RedisServer } from '@pitwall/testkit';
import type { BenchContext, BenchResult, BenchSuite } from '../suite.js';
import { FLOOR_SHARDS, measureFloor, microsecondsPer } from './gateway-floor/floor-run.js';

// The gateway's stream floor: what a pod spends per position before anyone watches. Every pod reads
// every entry of every shard, so at a race start (20,000 positions/s) this is paid by each pod even
// with no viewer on it. A real gateway process (the build, no viewer) reads the stream while the
// live-gateway suites' producer appends real encoded Positions at 20,000/s (2,000 devices at 10 Hz
// over 4 shards); beside it, in the same run, the raw reader process does only XREADGROUP ... NOACK
// over the same shards with the same COUNT and BLOCK (gateway-floor/raw-reader.ts). CPU is utime+stime
// from /proc over the same interval; the producer runs in this process and is charged to neither.

const SUITE = 'gateway-floor';
const DEVICES = 2_000;
const POSITIONS_PER_SECOND = 20_000;
/** Issue 20's target: gateway CPU per position with no viewer. */
const TARGET_US = 8;

const us = (n: number) => `${n.toFixed(2)} µs`;
const int = (n: number) => Math.round(n).toLocaleString('en-US');

async function run(context: BenchContext): Promise<BenchResult[]> {
  const redis = await RedisServer.start();
  try {
    const floor = await measureFloor({
      redisUrl: redis.url,
      shards: FLOOR_SHARDS,
      devices: DEVICES,
      positionsPerSecond: POSITIONS_PER_SECOND,
      settleMs: context.quick ? 2_000 : 3_000,
      measureMs: context.quick ? 4_000 : 15_000,
    });
    const gateway = microsecondsPer(floor.gatewayCpuSeconds, floor.gatewayPositions);
    const raw = microsecondsPer(floor.rawCpuSeconds, floor.rawEntries);
    // Every position appended must have been read once by each, or the figure is of something else.
    const complete = floor.gatewayTotal === floor.produced && floor.rawTotal === floor.produced;
    const counted = complete
      ? `every one of ${int(floor.produced)} positions appended read once by both`
      : `INCOMPLETE: ${int(floor.produced)} appended, gateway read ${int(floor.gatewayTotal)}, raw reader ${int(floor.rawTotal)}`;
    const inbound = `${int(floor.gatewayPositions / floor.seconds)} positions/s read`;
    context.log(
      `gateway ${us(gateway)} per position (${floor.gatewayCpuSeconds.toFixed(2)} CPU-s for ${int(floor.gatewayPositions)}), ` +
        `raw XREADGROUP loop ${us(raw)} per entry (${floor.rawCpuSeconds.toFixed(2)} CPU-s for ${int(floor.rawEntries)}), ` +
        `${inbound} over ${floor.seconds.toFixed(1)} s; ${counted}`,
    );
    const label = `${int(POSITIONS_PER_SECOND)} positions/s in, ${int(DEVICES)} devices over ${FLOOR_SHARDS} shards, no viewer`;
    return [
      {
        suite: SUITE,
        figure: `gateway CPU per position read (${label})`,
        unit: 'µs/position',
        value: gateway,
        baseline: { name: `raw XREADGROUP ... NOACK loop, same shards, COUNT and BLOCK`, value: raw },
        higherIsBetter: false,
        notes: `utime+stime over ${floor.seconds.toFixed(0)} s; ${inbound}; ${counted}; load average ${loadavg()[0]?.toFixed(1)}`,
      },
      {
        suite: SUITE,
        figure: `gateway CPU per position read against the target (${label})`,
        unit: 'µs/position',
        value: gateway,
        baseline: { name: `target ${TARGET_US} µs`, value: TARGET_US },
        higherIsBetter: false,
        targetRatio: 1,
        notes: `${((gateway * POSITIONS_PER_SECOND) / 1e6).toFixed(2)} of a core per pod at ${int(POSITIONS_PER_SECOND)}/s before serving anyone; raw loop ${us(raw)}`,
      },
    ];
  } finally {
    await redis.destroy();
  }
}

export const gatewayFloorSuite: BenchSuite = { name: SUITE, run };
