import { countPositions, startLocalStack, type LocalStack } from './stack/local-stack.js';

// `make up`: the whole pipeline on this machine with a simulated race and the live map. Prints the
// URLs and demo logins; Ctrl-C stops everything in reverse order (a second Ctrl-C forces it).

const started = Date.now();
const say = (line: string): void => {
  process.stdout.write(`[up ${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${line}\n`);
};

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) {
    process.stderr.write(`${name} must be a positive integer, got ${JSON.stringify(raw)}\n`);
    process.exit(78);
  }
  return value;
}

let stack: LocalStack | undefined;
let stopping = false;

async function shutdown(code: number): Promise<never> {
  if (stopping) process.exit(code);
  stopping = true;
  say('stopping (Ctrl-C again to force)');
  await stack?.stop();
  say('stopped');
  process.exit(code);
}

process.on('SIGINT', () => {
  if (stopping) {
    say('forced exit');
    process.exit(130);
  }
  void shutdown(0);
});
process.on('SIGTERM', () => void shutdown(0));

const upRedis = process.env.UP_REDIS ?? 'single';
if (upRedis !== 'single' && upRedis !== 'cluster') {
  process.stderr.write(`UP_REDIS must be single or cluster, got ${JSON.stringify(upRedis)}\n`);
  process.exit(78);
}

try {
  stack = await startLocalStack({
    redisCluster: upRedis === 'cluster',
    events: envInt('UP_EVENTS', 3),
    devicesPerEvent: envInt('UP_DEVICES_PER_EVENT', 6),
    streamShards: envInt('STREAM_SHARDS', 1),
    gateways: envInt('UP_GATEWAYS', 1),
    log: say,
  });
} catch (err) {
  process.stderr.write(`make up failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}

const { pipeline, mapUrl } = stack;
const { seed } = pipeline;
const lines = [
  '',
  'pitwall is up: a simulated race is driving.',
  '',
  `  live map        ${mapUrl}`,
  `  Directus        ${pipeline.directusUrl}   (admin: ${stack.adminEmail} / ${stack.adminPassword})`,
  ...pipeline.gatewayUrls.map((url, i) => `  live gateway ${i + 1}  ${url}`),
  `  ingestion       tcp+udp 127.0.0.1:${pipeline.ingestionPort} (Teltonika)`,
  `  Redis           ${pipeline.redisClusterNodes === undefined ? pipeline.redisUrl : `Cluster ${pipeline.redisClusterNodes}`}   stream ${pipeline.streamKey}:{0..${pipeline.streamShards - 1}}`,
  `  PostgreSQL      ${pipeline.databaseUrl}`,
  ...[pipeline.ingestion, pipeline.writer, ...pipeline.gateways].map((s) => `  metrics         ${s.metricsUrl}/metrics  (${s.label})`),
  `  logs            ${pipeline.logDir}`,
  '',
  `Demo logins (password ${stack.demoPassword}):`,
  `  ${seed.users.viewerOne.email}   may watch event ${seed.events[0]?.id ?? 1} only`,
  `  ${seed.users.viewerAll.email}   may watch every event`,
  `  ${seed.users.operator.email}     edits events, devices and entries in Directus`,
  '',
  `Events: ${seed.events.map((e) => `${e.id} ${e.name}`).join(', ')}`,
  'Ctrl-C stops everything.',
  '',
];
process.stdout.write(`${lines.join('\n')}\n`);

// Say when the race is visibly moving (the first positions are through the whole pipeline), then
// report progress now and then.
let moving = false;
const timer = setInterval(() => {
  if (!stack || stopping) return;
  void countPositions(stack.pipeline.databaseUrl).then((n) => {
    if (n === undefined || stopping) return;
    if (!moving && n > 0) {
      moving = true;
      say(`the race is moving: ${n} positions stored so far`);
    } else if (moving && Math.round((Date.now() - started) / 1000) % 60 < 2) {
      say(`${n} positions stored`);
    }
  });
}, 2_000);
timer.unref();
// Keep running until a signal arrives.
setInterval(() => undefined, 1 << 30);
