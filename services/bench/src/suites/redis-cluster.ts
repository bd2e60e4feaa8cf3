import { createPosition, encodePosition, POSITION_FIELD, PROCESSOR_GROUP, shardKeys, shardOf } from '@pitwall/contract';
import { commonEnv, createLogger, parseConfig } from '@pitwall/platform';
import { closeStreamClient, createStreamClient, groupStates } from '@pitwall/streams';
import { freePort, PostgresServer, RedisCluster, RedisServer, startService, waitFor, type ServiceProcess } from '@pitwall/testkit';
import type { BenchContext, BenchResult, BenchSuite } from '../suite.js';
import { floodIngestionEnv, runLoad } from './ingestion.js';

// Ingestion on a Redis Cluster (3 masters + 3 replicas, redis-server in cluster mode on loopback)
// beside a single Redis, same run, same load (1,000 TCP devices flooding 50-record packets,
// STREAM_SHARDS=4, AOF with fsync always on every node); then on the cluster with
// INGESTION_MIN_REPLICAS=1 (a WAIT for a replica before every acknowledgement) beside 0: the price of
// replicated acknowledgements. Then the writer draining the same backlog (entries preloaded into the
// four shards) into PostgreSQL from the cluster beside the single Redis. All nodes share the
// machine's CPUs with the services and the load.

const DEVICES = 1_000;
const RECORDS_PER_PACKET = 50;
const SHARDS = 4;
const DRAIN_DEVICES = 500;
const logger = createLogger('bench-redis-cluster', 'silent');

async function flood(
  redisEnv: Record<string, string>,
  extraEnv: Record<string, string>,
  context: BenchContext,
  firstIndex: number,
): Promise<number> {
  const port = await freePort();
  let service: ServiceProcess | undefined;
  try {
    service = await startService('ingestion', {
      ...redisEnv,
      ...floodIngestionEnv({ streamKey: `bench:cluster:${firstIndex}`, shards: SHARDS, maxLen: 1_000_000, port, devices: DEVICES }),
      ...extraEnv,
    });
    const result = await runLoad(
      {
        mode: 'flood',
        port,
        devices: DEVICES,
        recordsPerPacket: RECORDS_PER_PACKET,
        warmupMs: context.quick ? 2_000 : 5_000,
        durationMs: context.quick ? 5_000 : 20_000,
        firstIndex,
      },
      context.log,
    );
    return result.rate;
  } finally {
    await service?.proc.stop();
  }
}

/**
 * Rows/s of a writer draining `rows` entries preloaded into the shards (from its readiness to the
 * last acknowledgement of group processor), on the Redis that `redisEnv` names.
 */
async function drain(
  redisEnv: Record<string, string>,
  postgres: PostgresServer,
  rows: number,
  name: string,
  context: BenchContext,
): Promise<number> {
  const streamKey = `bench:drain:${name}`;
  const client = createStreamClient(parseConfig(commonEnv, redisEnv), { name: 'bench-loader', logger });
  let service: ServiceProcess | undefined;
  try {
    const keys = shardKeys(streamKey, SHARDS);
    const start = Date.now() - 3_600_000;
    const byShard = new Map<string, Buffer[]>(keys.map((k) => [k, []]));
    for (let i = 0; i < rows; i++) {
      const deviceId = String(352_093_080_000_000 + (i % DRAIN_DEVICES));
      const t = start + Math.floor(i / DRAIN_DEVICES) * 1000;
      const position = createPosition({
        deviceId,
        recordedAtMs: BigInt(t),
        receivedAtMs: BigInt(t + 300),
        latE7: 436_000_000 + i,
        lonE7: 39_000_000,
        altitudeM: 120,
        speedKmh: 140,
        headingDeg: i % 360,
        satellites: 10,
        codec: 2,
      });
      byShard.get(keys[shardOf(deviceId, SHARDS)] as string)?.push(Buffer.from(encodePosition(position)));
    }
    // One pipeline per shard and slice (one slot each, so one node in a cluster).
    for (const [key, entries] of byShard) {
      for (let i = 0; i < entries.length; i += 5_000) {
        const pipeline = client.pipeline();
        for (const entry of entries.slice(i, i + 5_000)) pipeline.xadd(key, '*', POSITION_FIELD, entry);
        await pipeline.exec();
      }
    }
    const databaseUrl = await postgres.createDatabase(`drain_${name}`);
    service = await startService('writer', {
      ...redisEnv,
      DATABASE_URL: databaseUrl,
      STREAM_KEY: streamKey,
      STREAM_SHARDS: String(SHARDS),
      INSTANCE_ID: `bench-${name}`,
      WRITER_PIPELINES: String(SHARDS),
      WRITER_BATCH_WAIT_MS: '0',
      LOG_LEVEL: 'warn',
    });
    const started = performance.now();
    await waitFor(
      'the writer to acknowledge every entry',
      async () => {
        const states = await groupStates(client, keys, PROCESSOR_GROUP);
        return states.every((s) => !(s instanceof Error) && s.group !== undefined && s.backlog.backlog === 0);
      },
      { timeoutMs: 600_000, intervalMs: 50 },
    );
    const rate = rows / ((performance.now() - started) / 1000);
    context.log(`writer drain (${name}): ${Math.round(rate).toLocaleString('en-US')} rows/s`);
    return rate;
  } finally {
    await service?.proc.stop();
    await closeStreamClient(client);
  }
}

export const redisClusterSuite: BenchSuite = {
  name: 'redis-cluster',
  async run(context: BenchContext): Promise<BenchResult[]> {
    const rows = context.quick ? 100_000 : 400_000;
    const postgres = await PostgresServer.start();
    try {
      const single = await RedisServer.start({ durable: true });
      let singleRate: number;
      let singleDrain: number;
      try {
        context.log('single Redis, INGESTION_MIN_REPLICAS=0');
        singleRate = await flood({ REDIS_URL: single.url }, {}, context, 0);
        singleDrain = await drain({ REDIS_URL: single.url }, postgres, rows, 'single', context);
      } finally {
        await single.destroy();
      }
      const cluster = await RedisCluster.start({ durable: true });
      try {
        const redisEnv = { REDIS_CLUSTER_NODES: cluster.seeds };
        context.log('Redis Cluster, INGESTION_MIN_REPLICAS=0');
        const clusterRate = await flood(redisEnv, {}, context, 100_000);
        context.log('Redis Cluster, INGESTION_MIN_REPLICAS=1');
        const replicatedRate = await flood(
          redisEnv,
          { INGESTION_MIN_REPLICAS: '1', INGESTION_REPLICA_TIMEOUT_MS: '1000' },
          context,
          200_000,
        );
        const clusterDrain = await drain(redisEnv, postgres, rows, 'cluster', context);
        const load = `${DEVICES.toLocaleString('en-US')} TCP devices, ${RECORDS_PER_PACKET} records/packet, STREAM_SHARDS=${SHARDS}, AOF fsync always`;
        return [
          {
            suite: 'redis-cluster',
            figure: 'ingestion positions/s acknowledged on a Redis Cluster (3 masters + 3 replicas)',
            unit: 'positions/s',
            value: clusterRate,
            baseline: { name: 'the same on a single Redis', value: singleRate },
            higherIsBetter: true,
            notes: `${load}; all six nodes, the service and the load share the machine's CPUs`,
          },
          {
            suite: 'redis-cluster',
            figure: 'ingestion positions/s acknowledged on the cluster with INGESTION_MIN_REPLICAS=1 (WAIT for a replica)',
            unit: 'positions/s',
            value: replicatedRate,
            baseline: { name: 'the same with INGESTION_MIN_REPLICAS=0', value: clusterRate },
            higherIsBetter: true,
            notes: `${load}; the price of acknowledgements a master failover cannot lose`,
          },
          {
            suite: 'redis-cluster',
            figure: 'writer rows/s draining a backlog from a Redis Cluster into PostgreSQL',
            unit: 'rows/s',
            value: clusterDrain,
            baseline: { name: 'the same from a single Redis', value: singleDrain },
            higherIsBetter: true,
            notes: `${rows.toLocaleString('en-US')} positions of ${DRAIN_DEVICES} devices preloaded over ${SHARDS} shards, one writer with a pipeline per shard, from readiness to the last XACK; testkit PostgreSQL (fsync off)`,
          },
        ];
      } finally {
        await cluster.destroy();
      }
    } finally {
      await postgres.destroy();
    }
  },
};
