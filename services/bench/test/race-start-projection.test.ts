import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  VALUES_PROD,
  framesPerViewerPerSecond,
  projectLoad,
  valuesProdPods,
  type Component,
  type ComponentProjection,
  type Projection,
  type RaceMeasurements,
  type TargetLoad,
} from '../src/suites/race-start/projection.js';

// Expectations computed by hand from the figures below (budget 0.6 core per pod).

const measured: RaceMeasurements = {
  positionsPerSecond: 2_000,
  devicesOnlyCores: { ingestion: 0.15, writer: 0.04, redis: 0.05, postgres: 0.02, 'live-gateway': 0.03 },
  gateway: { holdCores: 0.22, rampCores: 0.2, viewers: 5_000, framesPerViewerPerSecond: 4, subscriptionsPerSecond: 5_000 / 30 },
  directus: { loginCpuMs: 250, refreshCpuMs: undefined },
};

const target: TargetLoad = {
  positionsPerSecond: 20_000,
  viewers: 50_000,
  framesPerViewerPerSecond: 4,
  rampSeconds: 30,
  loginShare: 0.1,
  accessTokenTtlSeconds: 900,
};

function component(p: Projection, name: Component): ComponentProjection {
  const found = p.components.find((c) => c.component === name);
  if (!found) throw new Error(`no ${name} in the projection`);
  return found;
}

function unitCostUs(p: Projection, name: Component, unit: string): number {
  const row = p.rows.find((r) => r.component === name && r.unit.startsWith(unit));
  if (!row) throw new Error(`no ${name} ${unit} row`);
  return row.cpuSecondsPerUnit * 1e6;
}

describe('projectLoad', () => {
  const p = projectLoad(measured, target);

  it('costs a position from the devices-only phase and multiplies it by the positions at the target', () => {
    expect(unitCostUs(p, 'ingestion', 'position')).toBeCloseTo(75, 6); // 0.15 / 2,000 /s
    expect(component(p, 'ingestion')).toMatchObject({ pods: 3, incomplete: false }); // 1.5 cores / 0.6 = 2.5
    expect(component(p, 'ingestion').cores).toBeCloseTo(1.5, 9);
    expect(component(p, 'writer').cores).toBeCloseTo(0.4, 9);
    expect(component(p, 'writer').pods).toBe(1);
    expect(component(p, 'redis')).toMatchObject({ scaling: 'masters', pods: 1 });
    expect(component(p, 'redis').cores).toBeCloseTo(0.5, 9);
    // PostgreSQL takes a bigger machine, not pods.
    expect(component(p, 'postgres').cores).toBeCloseTo(0.2, 9);
    expect(component(p, 'postgres').pods).toBeNaN();
  });

  it('costs the gateway per frame (hold minus floor) and per subscription (ramp minus floor minus half the hold fan-out)', () => {
    expect(unitCostUs(p, 'live-gateway', 'position read')).toBeCloseTo(15, 6); // 0.03 / 2,000
    expect(unitCostUs(p, 'live-gateway', 'frame sent')).toBeCloseTo(9.5, 6); // (0.22 - 0.03) / (5,000 x 4)
    expect(unitCostUs(p, 'live-gateway', 'new subscription')).toBeCloseTo(450, 6); // (0.20 - 0.03 - 0.095) / 166.67
    // Floor 0.3 per pod; fan-out 200,000 frames/s x 9.5 us + 1,666.7/s x 450 us = 1.9 + 0.75 = 2.65 cores
    // over 0.6 - 0.3 per pod: 8.83, so 9 pods, 9 x 0.3 + 2.65 = 5.35 cores.
    const gateway = component(p, 'live-gateway');
    expect(gateway).toMatchObject({ pods: 9, floorExceedsBudget: false, incomplete: false });
    expect(gateway.cores).toBeCloseTo(5.35, 9);
  });

  it('costs Directus logins for viewers without a session; an unmeasured refresh leaves it a lower bound', () => {
    // 1,666.7 arrivals/s x 0.1 x 0.25 s = 41.67 cores: 70 pods.
    const directus = component(p, 'directus');
    expect(directus.cores).toBeCloseTo(41.667, 3);
    expect(directus).toMatchObject({ pods: 70, incomplete: true });
    const refresh = p.rows.find((r) => r.unit === 'token refresh');
    expect(refresh?.loadPerSecond).toBeCloseTo(55.556, 3); // 50,000 / 900 s
    expect(refresh?.cores).toBeNaN();
  });

  it('ranks components by cores, unmeasured last', () => {
    expect(p.components.map((c) => c.component)).toEqual(['directus', 'live-gateway', 'ingestion', 'redis', 'writer', 'postgres']);
    const noIngestion = projectLoad({ ...measured, devicesOnlyCores: { ...measured.devicesOnlyCores, ingestion: Number.NaN } }, target);
    expect(noIngestion.components.at(-1)?.component).toBe('ingestion');
  });

  it('says so when the stream floor alone exceeds the pod budget: no number of pods fits', () => {
    // 0.08 / 2,000 x 20,000 = 0.8 cores per pod > 0.6.
    const heavy = projectLoad({ ...measured, devicesOnlyCores: { ...measured.devicesOnlyCores, 'live-gateway': 0.08 } }, target);
    expect(component(heavy, 'live-gateway')).toMatchObject({
      floorExceedsBudget: true,
      pods: Number.POSITIVE_INFINITY,
      cores: Number.POSITIVE_INFINITY,
    });
  });

  it('a zero cost is a cost: no cores, one pod', () => {
    const idle = projectLoad({ ...measured, devicesOnlyCores: { ...measured.devicesOnlyCores, writer: 0 } }, target);
    expect(component(idle, 'writer')).toMatchObject({ cores: 0, pods: 1, incomplete: false });
  });

  it('a NaN cost or no positions measured gives no figure rather than a wrong one', () => {
    const nan = projectLoad({ ...measured, devicesOnlyCores: { ...measured.devicesOnlyCores, ingestion: Number.NaN } }, target);
    expect(component(nan, 'ingestion')).toMatchObject({ cores: Number.NaN, pods: Number.NaN, incomplete: true });
    const none = projectLoad({ ...measured, positionsPerSecond: 0 }, target);
    for (const c of ['ingestion', 'writer', 'redis', 'postgres', 'live-gateway'] as const) expect(component(none, c).cores).toBeNaN();
  });

  it('a gateway with no viewer phase measured keeps its floor and marks the fan-out unknown', () => {
    const noRuns = projectLoad({ ...measured, gateway: { ...measured.gateway, holdCores: undefined, rampCores: undefined } }, target);
    const gateway = component(noRuns, 'live-gateway');
    expect(gateway).toMatchObject({ pods: 1, incomplete: true, floorExceedsBudget: false });
    expect(gateway.cores).toBeCloseTo(0.3, 9);
    const noFloor = projectLoad({ ...measured, devicesOnlyCores: { ...measured.devicesOnlyCores, 'live-gateway': undefined } }, target);
    expect(component(noFloor, 'live-gateway')).toMatchObject({ cores: Number.NaN, pods: Number.NaN, incomplete: true });
  });

  it('with the floor measured apart at the target rate, a pod pays that marginal cost per position plus its fixed costs', () => {
    // 5 us per position measured apart; the devices-only 0.03 cores at 2,000/s = 0.01 of positions + 0.02 fixed.
    // Per pod at 20,000/s: 0.1 + 0.02 = 0.12; fan-out 2.65 cores over 0.6 - 0.12 per pod: 5.52, so 6 pods,
    // 6 x 0.12 + 2.65 = 3.37 cores. The frame and subscription costs still subtract the whole devices-only cores.
    const apart = projectLoad({ ...measured, gatewayFloorCpuSecondsPerPosition: 5e-6 }, target);
    expect(unitCostUs(apart, 'live-gateway', 'position read')).toBeCloseTo(5, 9);
    expect(apart.rows.find((r) => r.perPod)?.cores).toBeCloseTo(0.12, 9);
    expect(unitCostUs(apart, 'live-gateway', 'frame sent')).toBeCloseTo(9.5, 6);
    const gateway = component(apart, 'live-gateway');
    expect(gateway).toMatchObject({ pods: 6, floorExceedsBudget: false });
    expect(gateway.cores).toBeCloseTo(3.37, 9);
    // A marginal cost above what the whole phase spent leaves no fixed cost rather than a negative one.
    const high = projectLoad({ ...measured, gatewayFloorCpuSecondsPerPosition: 20e-6 }, target);
    expect(high.rows.find((r) => r.perPod)?.cores).toBeCloseTo(0.4, 9);
  });

  it('a hold below the floor (noise) costs a frame nothing rather than less than nothing', () => {
    const noisy = projectLoad({ ...measured, gateway: { ...measured.gateway, holdCores: 0.02 } }, target);
    expect(unitCostUs(noisy, 'live-gateway', 'frame sent')).toBe(0);
  });
});

describe('framesPerViewerPerSecond', () => {
  it('divides the frames by the viewer-seconds of a linear ramp and a hold', () => {
    // 5,000 viewers x (70 s - 30 s / 2) = 275,000 viewer-seconds.
    expect(framesPerViewerPerSecond({ framesSent: 1_089_525, viewers: 5_000, runSeconds: 70, rampSeconds: 30 })).toBeCloseTo(3.9619, 4);
    expect(framesPerViewerPerSecond({ framesSent: 10, viewers: 0, runSeconds: 70, rampSeconds: 30 })).toBeNaN();
  });
});

describe('values-prod', () => {
  it('VALUES_PROD states what charts/pitwall/values-prod.yaml runs', () => {
    const file: unknown = parse(readFileSync(join(import.meta.dirname, '../../../charts/pitwall/values-prod.yaml'), 'utf8'));
    expect(file).toMatchObject({
      ingestion: { replicaCount: VALUES_PROD.ingestion.replicaCount },
      writer: { autoscaling: { minReplicaCount: VALUES_PROD.writer.minReplicaCount, maxReplicaCount: VALUES_PROD.writer.maxReplicaCount } },
      liveGateway: { autoscaling: { ...VALUES_PROD.liveGateway } },
    });
  });

  it("the gateway's HPA settles on connections: ceil(viewers / target per pod) within its bounds", () => {
    const { minReplicas, maxReplicas, targetConnectionsPerPod } = VALUES_PROD.liveGateway;
    expect(valuesProdPods('live-gateway', { ...target, viewers: 50_000 })?.max).toBe(
      Math.min(maxReplicas, Math.max(minReplicas, Math.ceil(50_000 / targetConnectionsPerPod))),
    );
    expect(valuesProdPods('live-gateway', { ...target, viewers: 1 })?.max).toBe(minReplicas);
    expect(valuesProdPods('live-gateway', { ...target, viewers: 10_000_000 })?.max).toBe(maxReplicas);
    expect(valuesProdPods('postgres', target)).toBeUndefined();
  });
});
