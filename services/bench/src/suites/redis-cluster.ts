import { freePort, RedisCluster, RedisServer, startService, type ServiceProcess } from '@pitwall/testkit';
import type { BenchContext, BenchResult, BenchSuite } from '../suite.js';
import { runLoad } from './ingestion.js';

// Ingestion on a Redis Cluster (3 masters + 3 replicas, redis-server in cluster mode on loopback)
// beside a single Redis, same run, same load (1,000 TCP devices flooding 50-record packets,
// STREAM_SHARDS=4, AOF with fsync always on every node); then on the cluster with
// INGESTION_MIN_REPLICAS=1 (a WAIT for a replica before every acknowledgement) beside 0: the price of
// replicated acknowledgements. All nodes share the machine's CPUs with the service and the load.

const DEVICES = 1_000;
const RECORDS_PER_PACKET = 50;
const SHARDS = 4;

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
      ...extraEnv,
      STREAM_KEY: `bench:cluster:${firstIndex}`,
      STREAM_SHARDS: String(SHARDS),
      STREAM_MAXLEN: '1000000',
      INGESTION_HOST: '127.0.0.1',
      INGESTION_TCP_PORT: String(port),
      INGESTION_UDP_PORT: String(port),
      // Nobody consumes in this benchmark: keep backpressure out of the measurement.
      INGESTION_BACKPRESSURE_HIGH: '1',
      INGESTION_BACKPRESSURE_LOW: '0.99',
      INGESTION_BACKPRESSURE_POLL_MS: '60000',
      LOG_LEVEL: 'warn',
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

export const redisClusterSuite: BenchSuite = {
  name: 'redis-cluster',
  async run(context: BenchContext): Promise<BenchResult[]> {
    const single = await RedisServer.start({ durable: true });
    let singleRate: number;
    try {
      context.log('single Redis, INGESTION_MIN_REPLICAS=0');
      singleRate = await flood({ REDIS_URL: single.url }, {}, context, 0);
    } finally {
      await single.destroy();
    }
    const cluster = await RedisCluster.start({ durable: true });
    try {
      const redisEnv = { REDIS_CLUSTER_NODES: cluster.seeds };
      context.log('Redis Cluster, INGESTION_MIN_REPLICAS=0');
      const clusterRate = await flood(redisEnv, {}, context, 100_000);
      context.log('Redis Cluster, INGESTION_MIN_REPLICAS=1');
      const replicatedRate = await flood(redisEnv, { INGESTION_MIN_REPLICAS: '1', INGESTION_REPLICA_TIMEOUT_MS: '1000' }, context, 200_000);
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
      ];
    } finally {
      await cluster.destroy();
    }
  },
};
