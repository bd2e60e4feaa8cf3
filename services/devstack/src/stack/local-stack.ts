import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { REPO_ROOT } from '@pitwall/testkit';
import { startMapServer, type MapConfig } from './map-server.js';
import { startPipeline, type Pipeline } from './pipeline.js';
import { choosePort } from './ports.js';
import { startRace } from './race.js';

export interface LocalStackOptions {
  /** Folder for logs (gitignored). Default <repo>/.pitwall. */
  stateDir?: string;
  events?: number;
  devicesPerEvent?: number;
  streamShards?: number;
  gateways?: number;
  /** Run on a local Redis Cluster (3 masters + 3 replicas) instead of one redis-server (UP_REDIS=cluster). */
  redisCluster?: boolean;
  /** Time between two fixes of one simulated car. */
  fixIntervalMs?: number;
  log?: (line: string) => void;
}

export interface LocalStack {
  pipeline: Pipeline;
  mapUrl: string;
  demoPassword: string;
  adminEmail: string;
  adminPassword: string;
  /** Stops everything in reverse start order. */
  stop(): Promise<void>;
}

export const DEMO_PASSWORD = 'pitwall-demo';

/**
 * `make up`: the pipeline on the usual ports where free (Redis append-only, PostgreSQL, a seeded
 * Directus, ingestion, writer, live gateway), a simulated race driving into ingestion, and the live
 * map page. Everything lives for the session; stop() takes it down in reverse order.
 */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const log = options.log ?? (() => undefined);
  const stateDir = options.stateDir ?? join(REPO_ROOT, '.pitwall');
  const logDir = join(stateDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  // A session's logs only: the previous session's would be misleading.
  for (const file of readdirSync(logDir)) if (file.endsWith('.log')) rmSync(join(logDir, file), { force: true });

  const pipeline = await startPipeline({
    ports: 'standard',
    logDir,
    seedPlan: { events: options.events ?? 3, devicesPerEvent: options.devicesPerEvent ?? 6, password: DEMO_PASSWORD },
    streamShards: options.streamShards,
    gateways: options.gateways,
    redisCluster: options.redisCluster,
    log,
  });
  const stops: { name: string; stop: () => Promise<void> }[] = [{ name: 'pipeline', stop: () => pipeline.stop() }];
  const stop = async (): Promise<void> => {
    for (const entry of stops.reverse()) {
      if (entry.name !== 'pipeline') log(`stopping ${entry.name}`);
      await entry.stop().catch((err: unknown) => log(`stopping ${entry.name} failed: ${err instanceof Error ? err.message : String(err)}`));
    }
    stops.length = 0;
  };
  try {
    const { seed } = pipeline;
    log(`starting the simulated race: ${seed.devices.length} cars`);
    const race = startRace({
      host: '127.0.0.1',
      port: pipeline.ingestionPort,
      devices: seed.devices.length,
      fixIntervalMs: options.fixIntervalMs ?? 1000,
    });
    stops.push({ name: 'simulator', stop: () => race.stop() });

    const firstEvent = seed.events[0]?.id ?? 1;
    const config: MapConfig = {
      directusUrl: pipeline.directusUrl,
      gatewayUrls: pipeline.gatewayUrls,
      defaultEventId: firstEvent,
      demoLogins: [
        { role: 'viewer of one event', email: seed.users.viewerOne.email, password: DEMO_PASSWORD, note: `event ${firstEvent} only` },
        { role: 'viewer of every event', email: seed.users.viewerAll.email, password: DEMO_PASSWORD, note: 'all events' },
        { role: 'operator', email: seed.users.operator.email, password: DEMO_PASSWORD, note: 'edits business data' },
      ],
    };
    const map = await startMapServer(await choosePort(8000, new Set()), config, race.track);
    stops.push({ name: 'live map', stop: () => map.close() });
    return {
      pipeline,
      mapUrl: map.url,
      demoPassword: DEMO_PASSWORD,
      adminEmail: pipeline.directus?.adminEmail ?? '',
      adminPassword: pipeline.directus?.adminPassword ?? '',
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Rows in `positions` so far (for the progress line). */
export async function countPositions(databaseUrl: string): Promise<number | undefined> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 2000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const res = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM positions');
    return Number(res.rows[0]?.n ?? 0);
  } catch {
    return undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}
