import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';

/** Rendering the charts with the real helm binary (installed on demand by charts/scripts/ensure-helm.sh). */

export const CHART_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const REPO_ROOT = resolve(CHART_DIR, '../..');
/** The local chart of the dev cluster's dependencies (Redis, PostgreSQL, Directus). */
export const DEV_DEPS_CHART_DIR = join(REPO_ROOT, 'k8s/dev');

export const ENVIRONMENTS = ['dev', 'staging', 'prod'] as const;
export type Environment = (typeof ENVIRONMENTS)[number];

/** Release and namespace skaffold uses (skaffold.yaml); the tests render with the same. */
export const RELEASE = 'pitwall';
export const NAMESPACE = 'pitwall';

export const COMPONENTS = ['ingestion', 'writer', 'live-gateway'] as const;
export type Component = (typeof COMPONENTS)[number];

export function valuesFile(environment: Environment): string {
  return join(CHART_DIR, `values-${environment}.yaml`);
}

let helmPath: string | undefined;

/** The business plane's Directus extension, which the dev chart mounts from its build (k8s/dev/files/directus-extension). */
const EVENTS_CLAIM_EXTENSION = join(REPO_ROOT, 'services/business-plane/extensions/events-claim');

/**
 * Builds the extension when it never was (the unit tests run without `npm run build`), so that k8s/dev
 * renders; one worker at a time (flock), the others find it built.
 */
function ensureDevChartInputs(): void {
  if (existsSync(join(EVENTS_CLAIM_EXTENSION, 'dist/hook.js'))) return;
  execFileSync(
    'flock',
    [join(tmpdir(), 'pitwall-events-claim-build.lock'), join(REPO_ROOT, 'node_modules/.bin/tsc'), '--build', EVENTS_CLAIM_EXTENSION],
    {
      cwd: REPO_ROOT,
      stdio: 'inherit',
    },
  );
}

/** Path of the helm binary; the first call installs it into the cache outside the clone if needed. */
export function helmBinary(): string {
  if (helmPath === undefined) {
    helmPath = execFileSync(join(REPO_ROOT, 'charts/scripts/ensure-helm.sh'), { encoding: 'utf8' }).trim();
    ensureDevChartInputs();
  }
  return helmPath;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion; a non-zero exit is a result, not an exception. */
export function run(file: string, args: readonly string[], options: { cwd?: string } = {}): Promise<CommandResult> {
  return new Promise((resolvePromise) => {
    execFile(file, args, { cwd: options.cwd ?? REPO_ROOT, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

export function helm(args: readonly string[]): Promise<CommandResult> {
  return run(helmBinary(), args);
}

/** A rendered Kubernetes object (what every object has; the rest is checked by its model). */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

function isKubeObject(value: unknown): value is KubeObject {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  const metadata = record.metadata;
  return (
    typeof record.apiVersion === 'string' &&
    typeof record.kind === 'string' &&
    typeof metadata === 'object' &&
    metadata !== null &&
    typeof (metadata as Record<string, unknown>).name === 'string'
  );
}

/** Parses a multi-document YAML stream into objects, failing on anything that is not one. */
export function parseObjects(text: string): KubeObject[] {
  const objects: KubeObject[] = [];
  for (const document of parseAllDocuments(text)) {
    if (document.errors.length > 0) throw new Error(`invalid YAML: ${document.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = document.toJS();
    if (value === null || value === undefined) continue;
    if (!isKubeObject(value)) throw new Error(`not a Kubernetes object: ${JSON.stringify(value).slice(0, 200)}`);
    objects.push(value);
  }
  return objects;
}

export interface RenderOptions {
  /** Values files, in order (later ones win). */
  valuesFiles?: readonly string[];
  /** Values given inline (written to a temporary values file after valuesFiles). */
  values?: Record<string, unknown>;
  chartDir?: string;
  release?: string;
  namespace?: string;
}

function templateArgs(options: RenderOptions, scratch: string): string[] {
  const args = ['template', options.release ?? RELEASE, options.chartDir ?? CHART_DIR, '--namespace', options.namespace ?? NAMESPACE];
  for (const file of options.valuesFiles ?? []) args.push('--values', file);
  if (options.values !== undefined) {
    const file = join(scratch, 'values.yaml');
    writeFileSync(file, stringify(options.values));
    args.push('--values', file);
  }
  return args;
}

/** `helm template` output: the exit code and text, whatever it is. */
export async function template(options: RenderOptions = {}): Promise<CommandResult> {
  const scratch = mkdtempSync(join(tmpdir(), 'pitwall-chart-'));
  try {
    return await helm(templateArgs(options, scratch));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Renders the chart and parses every object; throws with helm's message when rendering fails. */
export async function render(options: RenderOptions = {}): Promise<KubeObject[]> {
  const result = await template(options);
  if (result.code !== 0) throw new Error(`helm template failed (${result.code}):\n${result.stderr}`);
  return parseObjects(result.stdout);
}

export function renderEnvironment(environment: Environment, options: Omit<RenderOptions, 'valuesFiles'> = {}): Promise<KubeObject[]> {
  return render({ ...options, valuesFiles: [valuesFile(environment)] });
}

/** The object of a kind and name; fails the test when it is not there. */
export function find(objects: readonly KubeObject[], kind: string, name: string): KubeObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name} among ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found;
}

/** Name of a component's objects for the tests' release: <release>-<component> (the release contains the chart name). */
export function componentName(component: Component): string {
  return `${RELEASE}-${component}`;
}
