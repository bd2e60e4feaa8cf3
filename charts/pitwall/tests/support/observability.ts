import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHART_DIR, type KubeObject } from './chart.js';
import { PrometheusRule } from './models.js';

/** The PromQL the chart ships: dashboard panel and variable queries, and alert expressions. */

const PROMQL_WORDS = new Set([
  // aggregations and their modifiers
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'and',
  'or',
  'unless',
  'offset',
  'atan2',
  // literals
  'inf',
  'nan',
]);

/**
 * Metric names an expression reads. Label matchers, grouping clauses, strings, durations and numbers
 * are removed first; what remains is function names (followed by `(`), keywords and metric names.
 */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = match[0];
    const next = stripped.slice((match.index ?? 0) + word.length).trimStart();
    if (next.startsWith('(')) continue;
    if (PROMQL_WORDS.has(word.toLowerCase())) continue;
    if (/^\d/.test(word)) continue;
    names.add(word);
  }
  return [...names].sort();
}

/** Grafana's variables replaced by values PromQL accepts, so a panel query can be parsed or evaluated. */
export function expandGrafanaVariables(expr: string, values: { namespace: string; release: string }): string {
  return expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$namespace', values.namespace)
    .replaceAll('$release', values.release);
}

export interface DashboardQuery {
  dashboard: string;
  panel: string;
  expr: string;
}

interface DashboardJson {
  uid?: string;
  title?: string;
  panels?: { title?: string; type?: string; targets?: { expr?: string }[] }[];
  templating?: { list?: { name?: string; query?: string | { query?: string } }[] };
}

export function dashboardFiles(): string[] {
  return readdirSync(join(CHART_DIR, 'dashboards'))
    .filter((f) => f.endsWith('.json'))
    .sort();
}

export function readDashboard(file: string): DashboardJson {
  return JSON.parse(readFileSync(join(CHART_DIR, 'dashboards', file), 'utf8')) as DashboardJson;
}

/** Every panel target and every query variable (label_values(<selector>, label) counts as <selector>). */
export function dashboardQueries(): DashboardQuery[] {
  const queries: DashboardQuery[] = [];
  for (const file of dashboardFiles()) {
    const dashboard = readDashboard(file);
    for (const panel of dashboard.panels ?? []) {
      for (const target of panel.targets ?? []) {
        if (target.expr !== undefined) queries.push({ dashboard: file, panel: panel.title ?? '?', expr: target.expr });
      }
    }
    for (const variable of dashboard.templating?.list ?? []) {
      const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
      const labelValues = query === undefined ? undefined : /^label_values\((.+),\s*[a-zA-Z_]+\)$/.exec(query);
      if (labelValues?.[1] !== undefined)
        queries.push({ dashboard: file, panel: `variable ${variable.name ?? '?'}`, expr: labelValues[1] });
    }
  }
  return queries;
}

export interface AlertRule {
  alert: string;
  expr: string;
}

/** The alerting rules of the rendered PrometheusRule. */
export function alertRules(objects: readonly KubeObject[]): AlertRule[] {
  const rule = objects.find((o) => PrometheusRule.is(o));
  if (!PrometheusRule.is(rule)) throw new Error('no PrometheusRule rendered');
  const rules: AlertRule[] = [];
  for (const group of rule.spec.groups ?? []) {
    for (const r of group.rules ?? []) {
      if (r.alert !== undefined && typeof r.expr === 'string') rules.push({ alert: r.alert, expr: r.expr });
    }
  }
  return rules;
}

/** Prometheus's own series and kube-state-metrics: not exported by the services, read on purpose. */
export const EXTERNAL_METRICS = new Set(['up', 'kube_pod_container_status_restarts_total']);

/** The family a sample name belongs to: a histogram's _bucket, _sum and _count series are its family. */
export function familyCandidates(name: string): string[] {
  const candidates = [name];
  for (const suffix of ['_bucket', '_sum', '_count']) if (name.endsWith(suffix)) candidates.push(name.slice(0, -suffix.length));
  return candidates;
}
