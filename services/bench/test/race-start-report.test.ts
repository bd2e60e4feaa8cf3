import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LOCAL_RACE_START, ViewerStats, type CpuUse, type Summary } from '@pitwall/load-tests';
import {
  renderRaceStartReport,
  tenfoldProjection,
  viewerReport,
  type MeasuredRun,
  type RaceStartRun,
} from '../src/suites/race-start/report.js';
import { readRunFile, writeRunFile } from '../src/suites/race-start/run-file.js';

// The report renders from plain data, the same whether the run just ended or its run.json is read back.

function summary(p50: number, p99: number, count = 5_000): Summary {
  return { count, mean: p50, min: 1, p50, p90: p99, p95: p99, p99, max: Number.POSITIVE_INFINITY };
}

function cpu(cores: Record<string, number>): CpuUse[] {
  return Object.entries(cores).map(([part, c]) => ({ part, cores: c, cpuSeconds: c * 30 }));
}

function measuredRun(accounts: number, gateway: { ramp: number; hold: number }): MeasuredRun {
  const { scenario } = LOCAL_RACE_START;
  return {
    scenario,
    accounts,
    report: {
      startAtMs: Date.UTC(2026, 11, 4, 12),
      endAtMs: Date.UTC(2026, 11, 4, 12) + 70_000,
      verdicts: [{ name: 'p99 time to snapshot (ms)', value: 4_140, limit: 2_000, ok: false }],
      stats: {
        all: {
          sessions: 5_000,
          snapshots: 5_000,
          failedSessions: 0,
          timeToOpen: summary(40, 900),
          timeToSnapshot: summary(300, 4_140),
          deliveryLatency: summary(200, Number.NaN, 0),
        },
        reconnectSessions: 0,
        positionFrames: 1_079_525,
        positionFramesParsed: 215_905,
        positionsParsed: 1_000_000,
        bytesReceived: 2 ** 30,
        serverCloses: {},
        errors: {},
        failures: {},
        unauthenticatedCloses: 0,
        retries: 0,
        refreshesOk: 0,
        refreshesFailed: 0,
        openSockets: 0,
        eventLoopDelayP99Ms: 1_076,
        eventLoopDelayMaxMs: 12_860,
      },
    },
    loadAverage: 11.43,
    counters: { subscribeOk: 5_000, subscribeRequests: 5_000, framesSent: 1_089_525, positionsReceived: 140_788 },
    calls: { authorize: 0, verify: 0, entries: 120, other: 0, total: 120 },
    newSubscriptions: 5_000,
    subscriptionCalls: 20,
    callsPerSubscription: 0.004,
    entriesRefreshCalls: 100,
    runSeconds: 70,
    revalidationsPerSecond: 0,
    authorizationMs: { p50: Number.NaN, p99: Number.NaN },
    gatewayFanoutMs: { p50: 123, p99: 472 },
    ackedDuringRun: 140_000,
    cpuRamp: cpu({ 'live-gateway-1': gateway.ramp, ingestion: 0.18, directus: 0.02 }),
    cpuHold: cpu({ 'live-gateway-1': gateway.hold, ingestion: 0.18, directus: 0.01 }),
  };
}

function raceStartRun(devicesOnlyGateway: number): RaceStartRun {
  return {
    machine: { cpuModel: 'test CPU', cores: 2, memoryGiB: 8, node: 'v24.0.0' },
    race: LOCAL_RACE_START.race,
    parseEvery: 5,
    batchWindowMs: 100,
    revalidateIntervalMs: { run: 20_000, default: 60_000 },
    setup: { '5000 logins': 338_000 },
    defaultHashLogin: { wallMs: 568, cpuMs: 252 },
    directusCapacity: { concurrency: 32, callsPerSecond: 27, p50Ms: 1_080, p99Ms: 2_646, statuses: { '200': 216 } },
    backlogAfterA: { ms: 0, calls: 0 },
    cpuDevicesOnly: cpu({ ingestion: 0.15, writer: 0.04, redis: 0.05, postgres: 0, 'live-gateway-1': devicesOnlyGateway }),
    devicesOnlyPositionsPerSecond: 2_000,
    runs: { distinct: measuredRun(5_000, { ramp: 0.17, hold: 0.15 }), cached: measuredRun(40, { ramp: 0.27, hold: 0.29 }) },
    simulation: {
      devices: 2_000,
      connected: 2_000,
      generated: 300_000,
      sent: 300_000,
      resent: 0,
      acked: 300_000,
      pending: 0,
      dropped: 0,
      packetsSent: 300_000,
      packetsAcked: 300_000,
      reconnects: 0,
      handshakesRefused: 0,
      ackTimeouts: 0,
      connectTimeouts: 0,
    },
    drained: true,
    stored: { acked: 300_000, missing: 0, duplicated: 0, examples: [] },
    profiles: [{ service: 'live-gateway', summary: { wallMs: 150_000, busyPercent: 18, gcPercent: 1, byArea: [], top: [] } }],
  };
}

const dir = mkdtempSync(join(tmpdir(), 'race-start-report-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('viewerReport', () => {
  it('reduces the histograms of both phases to their quantiles and keeps the counts', () => {
    const stats = new ViewerStats();
    for (const ms of [10, 20, 30, 40]) stats.phases.initial.timeToSnapshot.record(ms);
    stats.phases.reconnect.timeToSnapshot.record(1_000);
    stats.phases.initial.sessions = 4;
    stats.phases.reconnect.sessions = 1;
    stats.phases.reconnect.failedSessions = 1;
    stats.positionFrames = 7;
    stats.countFailure('timeout');
    const plain = viewerReport({ scenario: LOCAL_RACE_START.scenario, startAtMs: 1, endAtMs: 2, stats, verdicts: [], passed: true });
    expect(plain.stats.all).toMatchObject({ sessions: 5, failedSessions: 1, snapshots: 0 });
    expect(plain.stats.all.timeToSnapshot).toMatchObject({ count: 5, min: 10, max: 1_000, p99: 1_000 });
    expect(plain.stats.all.timeToOpen.count).toBe(0);
    expect(plain.stats).toMatchObject({ reconnectSessions: 1, positionFrames: 7, failures: { timeout: 1 } });
    expect(plain).toMatchObject({ startAtMs: 1, endAtMs: 2 });
  });
});

describe('race-start run file', () => {
  it('reads back what it wrote, NaN and Infinity included, and renders the same report from it', () => {
    const run = raceStartRun(0.02);
    const file = join(dir, 'run.json');
    writeRunFile(file, { quick: false, run });
    const read = readRunFile(file);
    expect(read).toEqual({ format: 1, quick: false, run });
    expect(read.run.runs.cached.authorizationMs.p99).toBeNaN();
    expect(read.run.runs.cached.report.stats.all.timeToOpen.max).toBe(Number.POSITIVE_INFINITY);
    expect(renderRaceStartReport(read.run)).toBe(renderRaceStartReport(run));
  });

  it('refuses a file of another format rather than render it wrongly', () => {
    const file = join(dir, 'old.json');
    writeFileSync(file, JSON.stringify({ format: 0, quick: false, run: {} }));
    expect(() => readRunFile(file)).toThrow(/not a race-start run file/);
  });
});

describe('the 10x section', () => {
  it('renders the projection table and compares it with values-prod', () => {
    // Floor 0.02 / 2,000 x 20,000 = 0.2 per pod; frames (0.29 - 0.02) / (5,000 x 3.962/s) = 13.6 us.
    const report = renderRaceStartReport(raceStartRun(0.02));
    const section = report.slice(report.indexOf('## What saturates first at 10x'));
    expect(section).toContain('| component | cores at 10x | pods at 0.6 core | values-prod runs | how it takes more |');
    expect(section).toContain('| live-gateway | position read (stream floor, every pod) | 10 µs | 20,000 | 0.20 per pod |');
    expect(section).toContain('Against charts/pitwall/values-prod.yaml:');
    expect(report).toContain('- machine: test CPU x 2, 8.0 GiB, Node v24.0.0');
  });

  it('says that no pod count fits when the stream floor alone exceeds the budget', () => {
    // 0.08 / 2,000 x 20,000 = 0.8 cores per pod > 0.6.
    const run = raceStartRun(0.08);
    const gateway = tenfoldProjection(run).components.find((c) => c.component === 'live-gateway');
    expect(gateway?.floorExceedsBudget).toBe(true);
    const report = renderRaceStartReport(run);
    expect(report).toContain('**none fits** (stream floor over the budget)');
    expect(report).toContain('the live gateway is short at any size');
  });
});
