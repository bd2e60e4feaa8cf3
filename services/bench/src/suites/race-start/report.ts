import { cpus, totalmem } from 'node:os';
import type {
  CpuUse,
  DirectusCalls,
  LoginCost,
  ProfileSummary,
  RaceShape,
  RaceStartScenario,
  ScenarioReport,
  StoredCheck,
  Summary,
} from '@pitwall/load-tests';
import type { SimulationStats } from '@pitwall/simulator';

// docs/race-start.md: what the end-to-end race start measured, where the CPU went, and what would
// saturate first at ten times the load. Generated from one run by `make bench`.

export interface RaceStartRun {
  scenario: RaceStartScenario;
  race: RaceShape;
  parseEvery: number;
  batchWindowMs: number;
  report: ScenarioReport;
  setup: Record<string, number>;
  /** 1-minute load average of the machine when the viewers started (other jobs included). */
  loadAverage: number;
  defaultHashLogin: LoginCost | undefined;
  /** The gateway's own Directus authorization call latency (its histogram), ms. */
  authorizationMs: { p50: number; p99: number };
  counters: Record<string, number>;
  calls: DirectusCalls;
  newSubscriptions: number;
  callsPerSubscription: number;
  ackedDuringRun: number;
  simulation: SimulationStats;
  drained: boolean;
  stored: StoredCheck;
  cpuRamp: CpuUse[];
  cpuHold: CpuUse[];
  profiles: { service: string; summary: ProfileSummary }[];
}

/** Parts that are one process with one JavaScript (or Redis) thread: they can use one core at most. */
const SINGLE_THREADED = new Set(['ingestion', 'writer', 'live-gateway-1', 'redis', 'directus']);

function n(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return '–';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function ms(value: number): string {
  return Number.isFinite(value) ? `${n(value, value < 10 ? 1 : 0)} ms` : '–';
}

function table(header: string[], rows: string[][]): string {
  return [header, header.map(() => '---'), ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

function percentileRow(name: string, s: Summary): string[] {
  return [name, n(s.count), ms(s.p50), ms(s.p90), ms(s.p95), ms(s.p99), ms(s.max)];
}

function cpuOf(uses: CpuUse[], part: string): number {
  return uses.find((u) => u.part === part)?.cores ?? 0;
}

function counts(record: Record<string, number>): string {
  const entries = Object.entries(record).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${k}: ${n(v)}`).join(', ');
}

function tenfold(run: RaceStartRun): string[] {
  const lines: string[] = [];
  const { scenario, race, calls } = run;
  const rampSeconds = scenario.rampSeconds;
  const rows = run.cpuRamp
    .filter((u) => u.part !== 'other processes')
    .map((u) => {
      const hold = cpuOf(run.cpuHold, u.part);
      const peak = Math.max(u.cores, hold);
      return { part: u.part, ramp: u.cores, hold, tenfold: peak * 10, single: SINGLE_THREADED.has(u.part) };
    })
    .sort((a, b) => b.tenfold - a.tenfold);
  lines.push(
    table(
      ['part', 'cores in the ramp', 'cores in the hold', 'x10 (busier phase)', 'limit'],
      rows.map((r) => [
        r.part,
        n(r.ramp, 2),
        n(r.hold, 2),
        n(r.tenfold, 1),
        r.single ? (r.tenfold > 1 ? '**over one core**' : 'one core') : 'scales out / several processes',
      ]),
    ),
  );
  lines.push('');
  const first = rows.find((r) => r.single && r.tenfold > 1);
  const directusRamp = cpuOf(run.cpuRamp, 'directus');
  const authorizeRate = calls.authorize / rampSeconds;
  const perCallMs = calls.authorize > 0 ? (directusRamp * rampSeconds * 1000) / calls.authorize : Number.NaN;
  const gatewayHold = cpuOf(run.cpuHold, 'live-gateway-1');
  const framesPerSecond = (run.counters.framesSent ?? 0) / (scenario.rampSeconds + scenario.holdSeconds);
  const positionsPerSecond = race.devices * race.positionHz;
  lines.push(
    `Ten times the load is ${n(race.devices * 10)} devices (${n(positionsPerSecond * 10)} positions/s) and ${n(scenario.viewers * 10)} viewers within ${rampSeconds} s ` +
      `(${n((scenario.viewers * 10) / rampSeconds)} new subscriptions/s), spread over ten times the events, so that each viewer still watches ` +
      `${n(race.devices / race.events)} cars. Assuming each part's CPU grows in proportion (per-position and per-subscription work ` +
      `does), the table multiplies each part's busier phase by ten. It leaves out what other jobs used on this machine.`,
  );
  lines.push('');
  if (first) {
    lines.push(
      `**First to saturate: ${first.part}** (${n(Math.max(first.ramp, first.hold), 2)} cores at 1x, ${n(first.tenfold, 1)} at 10x, and it cannot use more than one).`,
    );
    lines.push('');
  }
  lines.push(
    `- **Directus (authorization at subscribe).** ${n(calls.authorize)} \`GET /items/events/:id\` calls in the ${rampSeconds} s ramp ` +
      `(${n(authorizeRate, 1)}/s) kept Directus at ${n(directusRamp, 2)} cores: about ${n(perCallMs, 1)} ms of CPU per call; the gateway ` +
      `saw them take ${ms(run.authorizationMs.p50)} at the median and ${ms(run.authorizationMs.p99)} at p99 (queued behind its concurrency ` +
      `limit and Directus). At 10x that is ` +
      `${n(authorizeRate * 10)} calls/s, ${n((authorizeRate * 10 * perCallMs) / 1000, 1)} cores of Directus, one Node process per replica: ` +
      `Directus has to be scaled out (replicas behind its load balancer) before the race, or the gateway's permission cache keyed by ` +
      `something coarser than (user, event) (a policy) so that one call covers many viewers. With one distinct account per viewer the ` +
      `per-(user, event) cache only saves calls on reconnects and second tabs.`,
  );
  if (run.defaultHashLogin !== undefined) {
    const login = run.defaultHashLogin;
    const loginCores = (scenario.viewers * 10 * login.cpuMs) / 1000 / rampSeconds;
    lines.push(
      `- **Logins.** This run logged its ${n(scenario.viewers)} accounts in before the ramp, with cheap argon2 parameters. A login with ` +
        `Directus' default hashing (argon2id, 64 MiB, 3 passes; its administrator) took ${ms(login.wallMs)} and ${ms(login.cpuMs)} of Directus CPU ` +
        `here. If 10x viewers logged in during the ramp instead of arriving with a session, that alone would be ${n(loginCores, 1)} cores of ` +
        `Directus: logins at the start saturate before anything in the telemetry plane does. The live map should keep its session ` +
        `(refresh token) across visits.`,
    );
  }
  lines.push(
    `- **Gateway fan-out.** In the hold one gateway process used ${n(gatewayHold, 2)} cores to send ~${n(framesPerSecond)} frames/s ` +
      `(${n(run.counters.bytesSent ?? 0)} bytes in the run) and to read and decode all ${n(positionsPerSecond)} positions/s. Fan-out ` +
      `divides over more pods, but every pod reads and decodes the whole stream (its own consumer group): at 10x each pod decodes ` +
      `${n(positionsPerSecond * 10)} positions/s whatever its viewers, so the per-pod floor grows with the devices, not the viewers.`,
  );
  lines.push(
    `- **Ingestion, Redis, writer** grow with positions/s only (${n(positionsPerSecond * 10)}/s at 10x). Ingestion and the writer scale ` +
      `out (devices spread over pods; writers split the \`processor\` group); Redis is one thread and fsyncs every write ` +
      `(appendfsync always): shard the stream (STREAM_SHARDS over a Redis Cluster) before it reaches one core.`,
  );
  return lines;
}

export function renderRaceStartReport(run: RaceStartRun): string {
  const { scenario, race, report, calls, counters } = run;
  const stats = report.stats;
  const all = stats.all;
  const out: string[] = [];
  out.push('# Race start on one machine');
  out.push('');
  out.push(
    'Written by `make bench` (suite `race-start`) from the run described here; rerun it to refresh. Every part is a real process on this ' +
      'one machine: PostgreSQL, Directus 11, Redis (AOF, fsync always), ingestion, writer and live gateway from their builds, the ' +
      'device simulator (Teltonika Codec 8 Extended over TCP) and the load harness of `load-tests` running the shared `race-start` ' +
      'scenario (the same definitions the k6 scripts use). They all share the same cores, so every figure is pessimistic for a cluster.',
  );
  out.push('');
  out.push(`- machine: ${cpus()[0]?.model ?? '?'} x ${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`);
  out.push(`- date: ${new Date(report.startAtMs).toISOString()}; load average when the viewers started: ${n(run.loadAverage, 2)}`);
  out.push('');
  out.push('## What ran');
  out.push('');
  out.push(
    table(
      ['', ''],
      [
        [
          'devices',
          `${n(race.devices)} at ${race.positionHz} Hz over TCP, in ${race.events} events (${n(race.devices / race.events)} per event)`,
        ],
        ['viewers', `${n(scenario.viewers)}, linear ramp over ${scenario.rampSeconds} s, then ${scenario.holdSeconds} s connected`],
        ['accounts', `${n(scenario.viewers)} Directus users, one per viewer, logged in before the ramp (Directus /auth/login)`],
        ['viewer', 'open /live, `auth` message, `subscribe` to one event (round-robin), snapshot, positions until the end'],
        [
          'harness',
          `2 worker processes with ws clients; every frame received and counted, 1 positions frame in ${run.parseEvery} parsed for latency`,
        ],
        [
          'gateway',
          `one process, DIRECTUS_SECRET set (tokens verified locally), batch window ${run.batchWindowMs} ms, Directus reached through a counting proxy`,
        ],
        [
          'set-up',
          Object.entries(run.setup)
            .map(([k, v]) => `${k} ${n(v / 1000, 1)} s`)
            .join('; '),
        ],
      ],
    ),
  );
  out.push('');
  out.push('## Results');
  out.push('');
  out.push(
    table(
      ['figure', 'value', 'baseline (same run)'],
      [
        [
          'p99 time to first snapshot',
          ms(all.timeToSnapshot.quantile(0.99)),
          `p99 bare WebSocket upgrade of the same connections: ${ms(all.timeToOpen.quantile(0.99))}`,
        ],
        [
          'p99 delivery latency (arrival - rx)',
          ms(all.deliveryLatency.quantile(0.99)),
          `configured batch window: ${ms(run.batchWindowMs)}`,
        ],
        [
          'Directus calls per new subscription',
          n(run.callsPerSubscription, 3),
          'naive design (one authorization call per subscription): 1',
        ],
        [
          'acknowledged positions missing from PostgreSQL',
          n(run.stored.missing),
          `of ${n(run.stored.acked)} acknowledged to the devices (${n(run.stored.duplicated)} stored twice)`,
        ],
      ],
    ),
  );
  out.push('');
  out.push(
    table(
      ['viewer measurement', 'samples', 'p50', 'p90', 'p95', 'p99', 'max'],
      [
        percentileRow('time to open (TCP + upgrade)', all.timeToOpen.summary()),
        percentileRow('time to snapshot', all.timeToSnapshot.summary()),
        percentileRow('delivery latency', all.deliveryLatency.summary()),
      ],
    ),
  );
  out.push('');
  out.push(`The shared scenario's thresholds (what a k6 run against a cluster fails on):`);
  out.push('');
  out.push(
    table(
      ['threshold', 'measured', 'limit', ''],
      report.verdicts.map((v) => [v.name, n(v.value, v.name.includes('rate') ? 4 : 0), String(v.limit), v.ok ? 'met' : '**missed**']),
    ),
  );
  out.push('');
  out.push('## Viewers, gateway, Directus');
  out.push('');
  out.push(
    `- sessions: ${n(all.sessions)} (${n(stats.phases.reconnect.sessions)} of them returns after a failure), ${n(all.snapshots)} with a snapshot, ` +
      `${n(all.failedSessions)} failed (${counts(stats.failures)}); server closes: ${counts(stats.serverCloses)}; error frames: ${counts(stats.errors)}; ` +
      `${n(stats.retries)} requests sent again after a retryable error`,
  );
  out.push(
    `- received: ${n(stats.positionFrames)} positions frames, ${n(stats.bytesReceived / 2 ** 20, 1)} MiB; harness event loop delay p99 ` +
      `${ms(stats.eventLoopDelayP99Ms)} (max ${ms(stats.eventLoopDelayMaxMs)}): how late the clients themselves read`,
  );
  out.push(
    `- gateway: ${n(counters.subscribeOk ?? 0)} subscriptions accepted of ${n(counters.subscribeRequests ?? 0)} requests; ` +
      `${n(counters.authorizationCalls ?? 0)} authorization calls, ${n(counters.permissionCacheHits ?? 0)} permission cache hits, ` +
      `${n(counters.revalidations ?? 0)} re-validations, ${n(counters.entriesFetches ?? 0)} entries reads; ${n(counters.positionsReceived ?? 0)} positions read ` +
      `from the stream, ${n(counters.framesPublished ?? 0)} frames published, ${n(counters.framesSent ?? 0)} sent; ${n(counters.conflations ?? 0)} conflations, ` +
      `${n(counters.slowClientsClosed ?? 0)} slow clients closed`,
  );
  out.push(
    `- Directus, counted at the wire: ${n(calls.total)} calls (${n(calls.authorize)} authorize, ${n(calls.verify)} /users/me, ` +
      `${n(calls.entries)} entries, ${n(calls.other)} other) for ${n(run.newSubscriptions)} new subscriptions`,
  );
  out.push('');
  out.push('## Storage');
  out.push('');
  out.push(
    `${n(run.ackedDuringRun)} positions acknowledged during the viewers' run; after the devices drained (${run.drained ? 'every record acknowledged' : '**not drained**'}) ` +
      `${n(run.stored.acked)} acknowledged in total, **${n(run.stored.missing)} missing** from \`positions\`, ${n(run.stored.duplicated)} duplicated ` +
      `(simulator: ${n(run.simulation.resent)} records resent, ${n(run.simulation.reconnects)} reconnects, ${n(run.simulation.ackTimeouts)} ack timeouts).`,
  );
  out.push('');
  out.push('## Where the time goes');
  out.push('');
  out.push('CPU of each part (process group, from /proc), in cores (1 = one core busy), during the ramp and during the hold:');
  out.push('');
  const parts = [...new Set([...run.cpuRamp.map((u) => u.part), ...run.cpuHold.map((u) => u.part)])];
  out.push(
    table(
      ['part', 'ramp', 'hold'],
      parts.map((p) => [p, n(cpuOf(run.cpuRamp, p), 2), n(cpuOf(run.cpuHold, p), 2)]),
    ),
  );
  out.push('');
  for (const { service, summary } of run.profiles) {
    out.push(`### ${service} (CPU profile over the viewers' run)`);
    out.push('');
    out.push(
      `${n(summary.busyPercent, 0)}% busy over ${n(summary.wallMs / 1000, 1)} s, ${n(summary.gcPercent, 1)}% in garbage collection. ` +
        `By area: ${summary.byArea
          .slice(0, 6)
          .map((a) => `${a.area} ${n(a.selfPercent, 1)}%`)
          .join(', ')}.`,
    );
    out.push('');
    out.push(
      table(
        ['function (self time)', 'where', 'share of wall time'],
        summary.top.map((f) => [`\`${f.name}\``, `\`${f.location}\``, `${n(f.selfPercent, 1)}%`]),
      ),
    );
    out.push('');
  }
  out.push('## What saturates first at 10x');
  out.push('');
  out.push(...tenfold(run));
  out.push('');
  return `${out.join('\n')}\n`;
}
