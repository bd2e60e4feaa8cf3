import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { NAMESPACE, RELEASE, renderEnvironment, run, type KubeObject } from './support/chart.js';
import { PrometheusRule } from './support/models.js';
import { dashboardQueries, expandGrafanaVariables } from './support/observability.js';

/**
 * promtool (Debian package `prometheus`, installed by `make system-packages`) checks the rendered
 * PrometheusRule and the dashboards' queries, and unit-tests every alert against synthetic series.
 */

function promtool(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('promtool is missing: run `make system-packages` (Debian package prometheus)');
  }
}

let scratch: string;
let prod: KubeObject[];

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'pitwall-promtool-'));
  prod = await renderEnvironment('prod');
}, 60_000);

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function ruleSpec(objects: readonly KubeObject[]) {
  const rule = objects.find((o) => PrometheusRule.is(o));
  if (!PrometheusRule.is(rule)) throw new Error('no PrometheusRule rendered');
  return rule.spec;
}

function writeYaml(name: string, value: unknown): string {
  const file = join(scratch, name);
  writeFileSync(file, stringify(value));
  return file;
}

describe('the rendered PrometheusRule', () => {
  it('passes `promtool check rules` for staging and prod', async () => {
    for (const environment of ['staging', 'prod'] as const) {
      const file = writeYaml(`${environment}-rules.yml`, ruleSpec(await renderEnvironment(environment)));
      const result = await run(promtool(), ['check', 'rules', file]);
      expect(result.code, result.stdout + result.stderr).toBe(0);
      expect(result.stdout).toMatch(/SUCCESS: \d+ rules found/);
    }
  });

  it('is refused by promtool when an expression is broken (the check can fail)', async () => {
    const spec = ruleSpec(prod);
    const broken = { groups: spec.groups?.map((g) => ({ ...g, rules: g.rules?.map((r) => ({ ...r, expr: `${String(r.expr)} )` })) })) };
    const result = await run(promtool(), ['check', 'rules', writeYaml('broken-rules.yml', broken)]);
    expect(result.code).not.toBe(0);
  });
});

describe('the dashboards', () => {
  it('contain only queries promtool can parse', async () => {
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThan(50);
    const rules = {
      groups: [
        {
          name: 'dashboards',
          rules: queries.map((q, i) => ({
            record: `dashboard:query:${i}`,
            expr: expandGrafanaVariables(q.expr, { namespace: NAMESPACE, release: RELEASE }),
          })),
        },
      ],
    };
    const result = await run(promtool(), ['check', 'rules', writeYaml('dashboard-queries.yml', rules)]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
  });
});

/** Labels the ServiceMonitor relabelings give every pitwall series. */
function series(metric: string, labels: Record<string, string>, values: string) {
  const all = { namespace: NAMESPACE, release: RELEASE, ...labels };
  const text = Object.entries(all)
    .map(([k, v]) => `${k}="${v}"`)
    .join(', ');
  return { series: `${metric}{${text}}`, values };
}

const PROD_ALERT_LABELS = { team: 'telemetry', env: 'prod' };

describe('the alerts fire on the situations they describe (promtool test rules, prod values)', () => {
  it('fire and stay quiet as expected', async () => {
    // Annotations are templated text; their templates are checked by `check rules`, the firing here.
    const spec = ruleSpec(prod);
    const labelsOnly = { groups: spec.groups?.map((g) => ({ ...g, rules: g.rules?.map(({ annotations: _a, ...r }) => r) })) };
    const rulesFile = writeYaml('alert-rules.yml', labelsOnly);
    const ingestionPod = { pod: 'pitwall-ingestion-7d9f-abcde', component: 'ingestion' };
    const writerPod = { pod: 'pitwall-writer-5c4b-fghij', component: 'writer' };
    const gatewayPod = { pod: 'pitwall-live-gateway-6f7-klmno', component: 'live-gateway' };
    const tests = {
      rule_files: [rulesFile],
      evaluation_interval: '1m',
      tests: [
        {
          name: 'backlog over half of STREAM_MAXLEN on shard 2 only',
          interval: '1m',
          input_series: [
            series('pitwall_ingestion_stream_backlog_entries', { ...ingestionPod, shard: '2' }, '600000x15'),
            series('pitwall_ingestion_stream_backlog_entries', { ...ingestionPod, shard: '0' }, '1000x15'),
            series('pitwall_writer_group_lag_entries', { ...writerPod, shard: '1' }, '400000x15'),
            series('pitwall_writer_pending_entries', { ...writerPod, shard: '1' }, '50000x15'),
          ],
          alert_rule_test: [
            { eval_time: '3m', alertname: 'PitwallWriterLagNearMaxlen', exp_alerts: [] },
            {
              eval_time: '10m',
              alertname: 'PitwallWriterLagNearMaxlen',
              exp_alerts: [{ exp_labels: { severity: 'critical', namespace: NAMESPACE, shard: '2', ...PROD_ALERT_LABELS } }],
            },
          ],
        },
        {
          name: 'writer backlog alone (ingestion not reporting) still counts',
          interval: '1m',
          input_series: [
            series('pitwall_writer_group_lag_entries', { ...writerPod, shard: '3' }, '450000x15'),
            series('pitwall_writer_pending_entries', { ...writerPod, shard: '3' }, '100000x15'),
          ],
          alert_rule_test: [
            {
              eval_time: '10m',
              alertname: 'PitwallWriterLagNearMaxlen',
              exp_alerts: [{ exp_labels: { severity: 'critical', namespace: NAMESPACE, shard: '3', ...PROD_ALERT_LABELS } }],
            },
          ],
        },
        {
          name: 'entries trimmed before the writer stored them',
          interval: '1m',
          input_series: [series('pitwall_writer_trimmed_entries_total', writerPod, '0 0 0 5 5 5 5')],
          alert_rule_test: [
            { eval_time: '2m', alertname: 'PitwallWriterTrimmedEntries', exp_alerts: [] },
            {
              eval_time: '5m',
              alertname: 'PitwallWriterTrimmedEntries',
              exp_alerts: [{ exp_labels: { severity: 'critical', namespace: NAMESPACE, ...PROD_ALERT_LABELS } }],
            },
          ],
        },
        {
          name: 'ingestion backpressure held for minutes',
          interval: '1m',
          input_series: [
            series('pitwall_ingestion_backpressure', { ...ingestionPod, shard: '0' }, '0 0 1 1 1 1 1 1'),
            series('pitwall_ingestion_backpressure', { ...ingestionPod, shard: '1' }, '0 1 0 1 0 1 0 1'),
          ],
          alert_rule_test: [
            { eval_time: '3m', alertname: 'PitwallIngestionBackpressure', exp_alerts: [] },
            {
              eval_time: '6m',
              alertname: 'PitwallIngestionBackpressure',
              exp_alerts: [
                { exp_labels: { severity: 'warning', namespace: NAMESPACE, pod: ingestionPod.pod, shard: '0', ...PROD_ALERT_LABELS } },
              ],
            },
          ],
        },
        {
          name: 'Directus unavailable for a fifth of the authorization calls (token checks never failed, so that counter has no series)',
          interval: '1m',
          input_series: [
            series('pitwall_live_gateway_authorization_calls_total', { ...gatewayPod, result: 'unavailable' }, '0+25x15'),
            series('pitwall_live_gateway_authorization_calls_total', { ...gatewayPod, result: 'allowed' }, '0+100x15'),
          ],
          alert_rule_test: [
            {
              eval_time: '10m',
              alertname: 'PitwallAuthorizationUnavailable',
              exp_alerts: [{ exp_labels: { severity: 'critical', namespace: NAMESPACE, ...PROD_ALERT_LABELS } }],
            },
          ],
        },
        {
          name: 'Directus unavailable for token checks only',
          interval: '1m',
          input_series: [
            series('pitwall_live_gateway_authorization_calls_total', { ...gatewayPod, result: 'unavailable' }, '0x15'),
            series('pitwall_live_gateway_authentications_total', { ...gatewayPod, result: 'unavailable' }, '0+3x15'),
          ],
          alert_rule_test: [
            {
              eval_time: '10m',
              alertname: 'PitwallAuthorizationUnavailable',
              exp_alerts: [{ exp_labels: { severity: 'critical', namespace: NAMESPACE, ...PROD_ALERT_LABELS } }],
            },
          ],
        },
        {
          name: 'a single authorization call timing out among thousands: no page',
          interval: '1m',
          input_series: [
            series('pitwall_live_gateway_authorization_calls_total', { ...gatewayPod, result: 'unavailable' }, '0 0 0 1x12'),
            series('pitwall_live_gateway_authorization_calls_total', { ...gatewayPod, result: 'allowed' }, '0+1000x15'),
            series('pitwall_live_gateway_authentications_total', { ...gatewayPod, result: 'ok' }, '0+1000x15'),
          ],
          // The failure is in the 5-minute window from minute 3 on: a rule on any failure would fire at minute 5.
          alert_rule_test: [{ eval_time: '5m', alertname: 'PitwallAuthorizationUnavailable', exp_alerts: [] }],
        },
        {
          name: 'a quiet night: one of two calls failed, a high share of very few',
          interval: '1m',
          input_series: [
            series('pitwall_live_gateway_authorization_calls_total', { ...gatewayPod, result: 'unavailable' }, '0 0 1x13'),
            series('pitwall_live_gateway_authorization_calls_total', { ...gatewayPod, result: 'allowed' }, '0 0 1x13'),
          ],
          alert_rule_test: [{ eval_time: '4m', alertname: 'PitwallAuthorizationUnavailable', exp_alerts: [] }],
        },
        {
          name: 'viewers watch an event while no position arrives',
          interval: '1m',
          input_series: [
            series('pitwall_live_gateway_watched_events', gatewayPod, '2x20'),
            series('pitwall_ingestion_records_total', { ...ingestionPod, transport: 'tcp', codec: '8e' }, '0+60x5 300x15'),
          ],
          alert_rule_test: [
            { eval_time: '5m', alertname: 'PitwallNoPositionsWhileLive', exp_alerts: [] },
            {
              eval_time: '15m',
              alertname: 'PitwallNoPositionsWhileLive',
              exp_alerts: [{ exp_labels: { severity: 'critical', namespace: NAMESPACE, ...PROD_ALERT_LABELS } }],
            },
          ],
        },
        {
          name: 'positions keep arriving: no alert',
          interval: '1m',
          input_series: [
            series('pitwall_live_gateway_watched_events', gatewayPod, '2x20'),
            series('pitwall_ingestion_records_total', { ...ingestionPod, transport: 'tcp', codec: '8e' }, '0+60x20'),
          ],
          alert_rule_test: [{ eval_time: '15m', alertname: 'PitwallNoPositionsWhileLive', exp_alerts: [] }],
        },
        {
          name: 'a container restarting (kube-state-metrics)',
          interval: '1m',
          input_series: [
            {
              series: `kube_pod_container_status_restarts_total{namespace="${NAMESPACE}", pod="${writerPod.pod}", container="writer"}`,
              values: '0 0 1 1 2 2 3',
            },
            {
              series: `kube_pod_container_status_restarts_total{namespace="${NAMESPACE}", pod="other-app-1", container="app"}`,
              values: '0 5 10 15 20 25 30',
            },
          ],
          alert_rule_test: [
            {
              eval_time: '6m',
              alertname: 'PitwallPodRestarting',
              exp_alerts: [
                {
                  exp_labels: { severity: 'warning', namespace: NAMESPACE, pod: writerPod.pod, container: 'writer', ...PROD_ALERT_LABELS },
                },
              ],
            },
          ],
        },
        {
          name: 'a component without pods, and writers that are not ready',
          interval: '1m',
          input_series: [
            series('up', { ...ingestionPod, job: 'pitwall-ingestion-metrics' }, '1x10'),
            series('up', { ...writerPod, job: 'pitwall-writer-metrics' }, '1x10'),
            series('pitwall_writer_ready', writerPod, '0x10'),
          ],
          alert_rule_test: [
            {
              eval_time: '8m',
              alertname: 'PitwallComponentDown',
              exp_alerts: [
                {
                  exp_labels: {
                    severity: 'critical',
                    namespace: NAMESPACE,
                    release: RELEASE,
                    component: 'live-gateway',
                    ...PROD_ALERT_LABELS,
                  },
                },
              ],
            },
            {
              eval_time: '8m',
              alertname: 'PitwallWriterNotReady',
              exp_alerts: [{ exp_labels: { severity: 'critical', namespace: NAMESPACE, ...PROD_ALERT_LABELS } }],
            },
          ],
        },
      ],
    };
    const result = await run(promtool(), ['test', 'rules', writeYaml('alert-tests.yml', tests)]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain('SUCCESS');
  });

  it('covers every alert of the rule with a firing case', () => {
    const alerts = (ruleSpec(prod).groups ?? []).flatMap((g) => (g.rules ?? []).map((r) => r.alert ?? ''));
    expect(alerts.sort()).toEqual([
      'PitwallAuthorizationUnavailable',
      'PitwallComponentDown',
      'PitwallIngestionBackpressure',
      'PitwallNoPositionsWhileLive',
      'PitwallPodRestarting',
      'PitwallWriterLagNearMaxlen',
      'PitwallWriterNotReady',
      'PitwallWriterTrimmedEntries',
    ]);
  });
});
