import {
  createTestDatabase,
  freePort,
  sharedRedisUrl,
  startService,
  uniqueName,
  type ServiceName,
  type ServiceProcess,
} from '@pitwall/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderEnvironment } from './support/chart.js';
import { HorizontalPodAutoscaler } from './support/models.js';
import { alertRules, dashboardQueries, EXTERNAL_METRICS, familyCandidates, metricNames } from './support/observability.js';

/**
 * Every metric a dashboard panel, an alert or an autoscaler reads is one the services really export: the three built
 * services run against the run's throwaway Redis and PostgreSQL, and their /metrics are scraped.
 */

/** Labels the scrape adds (target and ServiceMonitor relabelings), not the service. */
const TARGET_LABELS = new Set(['namespace', 'release', 'component', 'pod', 'job', 'instance', 'container', 'service', 'endpoint']);

interface Family {
  type: string;
  /** Label names seen on its samples (empty when it has none yet). */
  labels: Set<string>;
}

const families = new Map<string, Family>();
const services: ServiceProcess[] = [];

function parseExposition(text: string): void {
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type?.[1] !== undefined) {
      if (!families.has(type[1])) families.set(type[1], { type: type[2] ?? 'untyped', labels: new Set() });
      continue;
    }
    if (line.startsWith('#') || line.trim() === '') continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s/.exec(line);
    if (sample?.[1] === undefined) continue;
    const family = familyCandidates(sample[1])
      .map((name) => families.get(name))
      .find((f) => f !== undefined);
    for (const match of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) if (match[1] !== undefined) family?.labels.add(match[1]);
  }
}

async function start(name: ServiceName, env: Record<string, string>): Promise<void> {
  const service = await startService(name, env, { timeoutMs: 30_000 });
  services.push(service);
  const response = await fetch(`${service.metricsUrl}/metrics`);
  expect(response.status).toBe(200);
  parseExposition(await response.text());
}

beforeAll(async () => {
  const common = { REDIS_URL: sharedRedisUrl(), STREAM_KEY: uniqueName('chart-metrics'), STREAM_SHARDS: '2', LOG_LEVEL: 'warn' };
  await Promise.all([
    start('ingestion', { ...common, INGESTION_TCP_PORT: String(await freePort()), INGESTION_UDP_PORT: String(await freePort()) }),
    start('writer', { ...common, DATABASE_URL: await createTestDatabase('chart_metrics') }),
    // Directus is not needed to start: nothing listens on that port, and no viewer asks for authorization.
    start('live-gateway', {
      ...common,
      GATEWAY_PORT: String(await freePort()),
      DIRECTUS_URL: `http://127.0.0.1:${await freePort()}`,
      DIRECTUS_SERVICE_TOKEN: 'chart-metrics-test-token',
    }),
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all(services.map((s) => s.proc.stop()));
});

function exported(name: string): Family | undefined {
  return familyCandidates(name)
    .map((candidate) => families.get(candidate))
    .find((f) => f !== undefined);
}

/** Label names a selector `name{label="..."}` matches on, per metric name in the expression. */
function selectorLabels(expr: string): { metric: string; labels: string[] }[] {
  const found: { metric: string; labels: string[] }[] = [];
  for (const match of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}/g)) {
    const labels = [...(match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1] ?? '');
    found.push({ metric: match[1] ?? '', labels });
  }
  return found;
}

describe('metrics the chart’s dashboards and alerts use', () => {
  it('scraped the three services (each exports its own pitwall_<service>_ metrics)', () => {
    for (const prefix of ['pitwall_ingestion_', 'pitwall_writer_', 'pitwall_live_gateway_']) {
      expect(
        [...families.keys()].some((name) => name.startsWith(prefix)),
        prefix,
      ).toBe(true);
    }
    expect(families.get('process_cpu_seconds_total')?.type).toBe('counter');
  });

  it('are all exported by a running service (histograms through _bucket/_sum/_count), or are Prometheus or kube-state-metrics series', async () => {
    const used = new Map<string, string>();
    for (const query of dashboardQueries())
      for (const name of metricNames(query.expr)) used.set(name, `${query.dashboard}: ${query.panel}`);
    const prod = await renderEnvironment('prod');
    for (const rule of alertRules(prod)) for (const name of metricNames(rule.expr)) used.set(name, `alert ${rule.alert}`);
    // The gateway's HPA scales on a pods metric that prometheus-adapter serves from the same series.
    for (const object of prod)
      if (HorizontalPodAutoscaler.is(object))
        for (const metric of object.spec?.metrics ?? [])
          if (metric.pods) used.set(metric.pods.metric.name, `HPA ${object.metadata?.name ?? ''}`);
    expect([...used.values()].some((where) => where.startsWith('HPA'))).toBe(true);
    expect(used.size).toBeGreaterThan(40);
    const missing = [...used]
      .filter(([name]) => !EXTERNAL_METRICS.has(name) && exported(name) === undefined)
      .map(([name, where]) => `${name} (${where})`);
    expect(missing).toEqual([]);
  });

  it('read histograms only through their series and counters only through rate/increase-style functions', () => {
    for (const query of dashboardQueries()) {
      for (const name of metricNames(query.expr)) {
        const family = exported(name);
        if (family?.type === 'histogram') expect(name, `${query.dashboard}: ${query.panel}`).toMatch(/_(bucket|sum|count)$/);
        if (family?.type === 'counter')
          expect(query.expr, `${query.dashboard}: ${query.panel}`).toMatch(new RegExp(`(rate|increase)\\(${name}`));
      }
    }
  });

  it('filter and group only on labels the metric has (or the scrape adds)', async () => {
    const exprs = [...dashboardQueries().map((q) => q.expr), ...alertRules(await renderEnvironment('prod')).map((r) => r.expr)];
    const wrong: string[] = [];
    for (const expr of exprs) {
      for (const { metric, labels } of selectorLabels(expr)) {
        const family = exported(metric);
        if (family === undefined || family.labels.size === 0) continue;
        for (const label of labels) {
          if (!TARGET_LABELS.has(label) && !family.labels.has(label) && label !== 'le') wrong.push(`${metric}{${label}}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('finds no metric that is missing (the check can fail)', () => {
    expect(exported('pitwall_writer_rows_total')).toBeDefined();
    expect(exported('pitwall_writer_commit_duration_seconds_bucket')?.type).toBe('histogram');
    expect(exported('pitwall_writer_rows_written_total')).toBeUndefined();
    expect(metricNames('sum by (shard) (rate(pitwall_x_total{a="b"}[5m])) / on (pod) group_left up')).toEqual(['pitwall_x_total', 'up']);
  });
});
