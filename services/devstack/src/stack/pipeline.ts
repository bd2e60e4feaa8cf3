import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { seedDirectus, startDirectus, type Seeded, type SeedPlan, type StartedDirectus } from '@pitwall/business-plane';
import { PostgresServer, RedisCluster, RedisServer, REPO_ROOT, uniqueName } from '@pitwall/testkit';
import pg from 'pg';
import { choosePort } from './ports.js';
import { ServiceHandle } from './service-launcher.js';

/** A Directus that is already running and seeded (the e2e run's shared one). */
export interface ExistingDirectus {
  url: string;
  secret: string;
  seed: Seeded;
}

export interface PipelineOptions {
  /** Folder for the processes' logs. Default <repo>/.pitwall/logs. */
  logDir?: string;
  /** 'standard': the usual ports (6379, 5432, 8055, 5027, 8080, 9464...) where free; 'free': any free port. */
  ports?: 'standard' | 'free';
  /** Use this Redis instead of starting one (append-only) that the pipeline owns. */
  redisUrl?: string;
  /**
   * Start a Redis Cluster (3 masters + 3 replicas, append-only, free ports below 55536) instead of one
   * redis-server, and run the services in cluster mode (REDIS_CLUSTER_NODES). Ignored with redisUrl.
   */
  redisCluster?: boolean;
  /** Superuser URL of a PostgreSQL to use instead of starting one. */
  postgresAdminUrl?: string;
  /** Superuser URL of the PostgreSQL for a Directus the pipeline starts. Default: the writer's server. */
  directusPostgresAdminUrl?: string;
  /** Use this Directus instead of starting and seeding one. */
  directus?: ExistingDirectus;
  /** Seed plan of a Directus the pipeline starts. */
  seedPlan?: SeedPlan;
  /** Access-token lifetime of a Directus the pipeline starts. */
  accessTokenTtl?: string;
  /** STREAM_KEY; default a unique one when the Redis is shared, the contract's default otherwise. */
  streamKey?: string;
  streamShards?: number;
  gateways?: number;
  /** Extra environment per service (e.g. shorter retry timings in tests). */
  env?: Partial<Record<'ingestion' | 'writer' | 'live-gateway', Record<string, string>>>;
  log?: (line: string) => void;
}

export interface Pipeline {
  /** The standalone Redis; in cluster mode one of its nodes (a plain client there gets MOVED for other slots). */
  redisUrl: string;
  /** REDIS_CLUSTER_NODES of the services when the pipeline runs on a Redis Cluster. */
  redisClusterNodes: string | undefined;
  /** The writer's database. */
  databaseUrl: string;
  streamKey: string;
  streamShards: number;
  directusUrl: string;
  directusSecret: string;
  seed: Seeded;
  ingestion: ServiceHandle;
  /** TCP and UDP port of ingestion on 127.0.0.1. */
  ingestionPort: number;
  writer: ServiceHandle;
  gateways: ServiceHandle[];
  /** ws://127.0.0.1:<port>/live, one per gateway. */
  gatewayUrls: string[];
  /** Servers the pipeline started itself (undefined when given). */
  redis: RedisServer | undefined;
  /** The Redis Cluster it started (redisCluster). */
  cluster: RedisCluster | undefined;
  postgres: PostgresServer | undefined;
  directus: StartedDirectus | undefined;
  logDir: string;
  /** Stops everything it started, in reverse order. */
  stop(): Promise<void>;
}

/**
 * Redis, PostgreSQL, Directus, ingestion, writer and live gateway(s) as real processes: what `make up`
 * runs and what the end-to-end tests provoke failures in. Each part can be handed in (shared test
 * servers) or is started and owned here.
 */
export async function startPipeline(options: PipelineOptions = {}): Promise<Pipeline> {
  const log = options.log ?? (() => undefined);
  const logDir = options.logDir ?? join(REPO_ROOT, '.pitwall', 'logs');
  mkdirSync(logDir, { recursive: true });
  const shards = options.streamShards ?? 1;
  const gatewayCount = options.gateways ?? 1;
  const taken = new Set<number>();
  const port = (standard: number, udp = false): Promise<number> =>
    choosePort(options.ports === 'standard' ? standard : undefined, taken, { udp });

  const stops: { name: string; stop: () => Promise<void> }[] = [];
  const stop = async (): Promise<void> => {
    for (const entry of stops.reverse()) {
      log(`stopping ${entry.name}`);
      await entry.stop().catch((err: unknown) => log(`stopping ${entry.name} failed: ${err instanceof Error ? err.message : String(err)}`));
    }
    stops.length = 0;
  };

  try {
    const clusterMode = options.redisCluster === true && options.redisUrl === undefined;
    const [redis, cluster, postgres] = await Promise.all([
      options.redisUrl || clusterMode ? undefined : port(6379).then((p) => RedisServer.start({ durable: true, port: p })),
      clusterMode ? RedisCluster.start({ durable: true }) : undefined,
      options.postgresAdminUrl ? undefined : port(5432).then((p) => PostgresServer.start({ port: p })),
    ]);
    if (redis) stops.push({ name: 'Redis', stop: () => redis.destroy() });
    if (cluster) stops.push({ name: 'Redis Cluster', stop: () => cluster.destroy() });
    if (postgres) stops.push({ name: 'PostgreSQL', stop: () => postgres.destroy() });
    const redisUrl = options.redisUrl ?? redis?.url ?? cluster?.nodes[0]?.server.url ?? '';
    const redisClusterNodes = cluster?.seeds;
    const postgresAdminUrl = options.postgresAdminUrl ?? postgres?.url() ?? '';
    log(`Redis ${redisClusterNodes === undefined ? redisUrl : `Cluster ${redisClusterNodes}`}, PostgreSQL ${postgresAdminUrl}`);

    const database = postgres ? 'pitwall' : uniqueName('pitwall').toLowerCase();
    const databaseUrl = await createDatabase(postgresAdminUrl, database);
    // On a shared server the database is ours to drop (after the services stopped: reverse order).
    if (!postgres) stops.push({ name: 'pipeline database', stop: () => dropDatabase(postgresAdminUrl, database) });

    let directus: StartedDirectus | undefined;
    let business: ExistingDirectus;
    if (options.directus) {
      business = options.directus;
    } else {
      log('starting Directus (the first run on a machine installs it: about six minutes, once)');
      const started = await startDirectus({
        postgresAdminUrl: options.directusPostgresAdminUrl ?? postgresAdminUrl,
        database: postgres && !options.directusPostgresAdminUrl ? 'directus' : undefined,
        port: await port(8055),
        logFile: join(logDir, 'directus.log'),
        accessTokenTtl: options.accessTokenTtl,
        // Realtime on: the live map follows its event's entries and status through Directus's own
        // WebSocket (the architecture's second socket), beside the gateway's.
        env: { WEBSOCKETS_ENABLED: 'true' },
        onInstallLog: (line) => log(line),
      });
      directus = started;
      stops.push({
        name: 'Directus',
        stop: async () => {
          await started.stop();
          await started.destroy();
        },
      });
      const seed = await seedDirectus(started, options.seedPlan);
      business = { url: started.url, secret: started.secret, seed };
      log(`Directus ${started.url} seeded: ${seed.events.length} events, ${seed.devices.length} devices`);
    }

    const streamKey = options.streamKey ?? (options.redisUrl ? uniqueName('pitwall:positions') : 'pitwall:positions');
    const redisEnv: Record<string, string> =
      redisClusterNodes === undefined ? { REDIS_URL: redisUrl } : { REDIS_CLUSTER_NODES: redisClusterNodes };
    const common = { ...redisEnv, STREAM_KEY: streamKey, STREAM_SHARDS: String(shards), LOG_LEVEL: 'info' };
    let metricsPort = 9464;
    const nextMetricsPort = (): Promise<number> => port(metricsPort++);

    const writer = new ServiceHandle('writer', {
      label: 'writer',
      env: { ...common, DATABASE_URL: databaseUrl, INSTANCE_ID: 'writer-1', ...options.env?.writer },
      metricsPort: await nextMetricsPort(),
      logFile: join(logDir, 'writer.log'),
    });
    await writer.start();
    stops.push({ name: 'writer', stop: () => writer.stop() });

    const gateways: ServiceHandle[] = [];
    const gatewayUrls: string[] = [];
    for (let i = 1; i <= gatewayCount; i++) {
      const gatewayPort = await port(8079 + i);
      const gateway = new ServiceHandle('live-gateway', {
        label: `live-gateway-${i}`,
        env: {
          ...common,
          GATEWAY_PORT: String(gatewayPort),
          INSTANCE_ID: `gateway-${i}`,
          DIRECTUS_URL: business.url,
          DIRECTUS_SECRET: business.secret,
          DIRECTUS_SERVICE_TOKEN: business.seed.serviceToken,
          // Every viewer of a local stack (the map, the load harness) comes from this machine's address.
          GATEWAY_MAX_CONNECTIONS_PER_ADDRESS: '1000000',
          ...options.env?.['live-gateway'],
        },
        metricsPort: await nextMetricsPort(),
        logFile: join(logDir, `live-gateway-${i}.log`),
      });
      await gateway.start();
      stops.push({ name: `live-gateway-${i}`, stop: () => gateway.stop() });
      gateways.push(gateway);
      gatewayUrls.push(`ws://127.0.0.1:${gatewayPort}/live`);
    }

    const ingestionPort = await port(5027, true);
    const ingestion = new ServiceHandle('ingestion', {
      label: 'ingestion',
      env: {
        ...common,
        INGESTION_HOST: '127.0.0.1',
        INGESTION_TCP_PORT: String(ingestionPort),
        INGESTION_UDP_PORT: String(ingestionPort),
        // Every simulated device of a local stack (make up, the race-start bench) comes from this
        // machine's address: the per-address cap (1,000 by default) would refuse a larger fleet.
        INGESTION_MAX_CONNECTIONS_PER_ADDRESS: '1000000',
        ...options.env?.ingestion,
      },
      metricsPort: await nextMetricsPort(),
      logFile: join(logDir, 'ingestion.log'),
    });
    await ingestion.start();
    stops.push({ name: 'ingestion', stop: () => ingestion.stop() });

    return {
      redisUrl,
      redisClusterNodes,
      databaseUrl,
      streamKey,
      streamShards: shards,
      directusUrl: business.url,
      directusSecret: business.secret,
      seed: business.seed,
      ingestion,
      ingestionPort,
      writer,
      gateways,
      gatewayUrls,
      redis,
      cluster,
      postgres,
      directus,
      logDir,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.rowCount === 0) await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await client.end().catch(() => undefined);
  }
}
