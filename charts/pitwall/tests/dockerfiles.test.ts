import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { BASE_RECIPE, isIgnored, readDockerignore } from '@pitwall/images';
import { CHART_DIR, COMPONENTS, REPO_ROOT, type Component } from './support/chart.js';

/**
 * The Dockerfiles' structure (stages, dependencies, user, signals, entry point, paths). The images
 * themselves are built by `make images` and run by images.int.test.ts.
 */

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  name: string;
  base: string;
  instructions: Instruction[];
}

/** Instructions with continuation lines joined and comments dropped. */
function parseDockerfile(text: string): { preamble: Instruction[]; stages: Stage[] } {
  const instructions: Instruction[] = [];
  let pending = '';
  let startLine = 0;
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (pending === '') startLine = index + 1;
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    const [keyword = '', ...rest] = full.split(/\s+/);
    instructions.push({ keyword: keyword.toUpperCase(), args: rest.join(' '), line: startLine });
  }
  const preamble: Instruction[] = [];
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const match = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args);
      if (!match) throw new Error(`line ${instruction.line}: cannot read FROM ${instruction.args}`);
      stages.push({ base: match[1] ?? '', name: match[2] ?? `stage-${stages.length}`, instructions: [] });
    } else if (stages.length === 0) {
      preamble.push(instruction);
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return { preamble, stages };
}

interface PackageJson {
  name: string;
  dependencies?: Record<string, string>;
  scripts?: Record<string, string>;
}

function readPackage(dir: string): PackageJson {
  return JSON.parse(readFileSync(join(REPO_ROOT, 'services', dir, 'package.json'), 'utf8')) as PackageJson;
}

/** services/<dir> of every workspace package this service imports, transitively (from package.json). */
function workspaceDependencies(component: Component): string[] {
  const rootPackage = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { workspaces: string[] };
  expect(rootPackage.workspaces).toContain('services/*');
  // Workspace folders under services/ (services/* and nested globs such as the Directus extensions), relative to services/.
  const dirByName = new Map<string, string>();
  for (const glob of rootPackage.workspaces) {
    if (!glob.startsWith('services/') || !glob.endsWith('/*')) continue;
    const parent = glob.slice('services/'.length, -'/*'.length);
    const parentPath = join(REPO_ROOT, 'services', parent);
    if (!existsSync(parentPath)) continue;
    for (const name of readdirSync(parentPath)) {
      const dir = parent === '' ? name : `${parent}/${name}`;
      if (existsSync(join(REPO_ROOT, 'services', dir, 'package.json'))) dirByName.set(readPackage(dir).name, dir);
    }
  }
  const found = new Set<string>();
  const visit = (dir: string) => {
    for (const dependency of Object.keys(readPackage(dir).dependencies ?? {})) {
      if (!dependency.startsWith('@pitwall/')) continue;
      const depDir = dirByName.get(dependency);
      if (depDir === undefined) throw new Error(`${dir} depends on ${dependency}, which is not a known workspace`);
      if (!found.has(depDir)) {
        found.add(depDir);
        visit(depDir);
      }
    }
  };
  visit(component);
  return [...found].sort();
}

function stage(stages: readonly Stage[], name: string): Stage {
  const found = stages.find((s) => s.name === name);
  if (found === undefined) throw new Error(`no stage ${name}`);
  return found;
}

function all(s: Stage, keyword: string): Instruction[] {
  return s.instructions.filter((i) => i.keyword === keyword);
}

const dockerignore = readDockerignore(REPO_ROOT);

const EXPOSED: Record<Component, string[]> = {
  ingestion: ['5027/tcp', '5027/udp', '9464/tcp'],
  writer: ['9464/tcp'],
  'live-gateway': ['8080/tcp', '9464/tcp'],
};

describe.each(COMPONENTS)('services/%s/Dockerfile', (component) => {
  const path = join(REPO_ROOT, 'services', component, 'Dockerfile');
  const { preamble, stages } = parseDockerfile(readFileSync(path, 'utf8'));
  const dependencies = workspaceDependencies(component);
  const compiled = [...dependencies, component];

  it('builds in stages from node:<version>-bookworm-slim pinned by digest, the release the stand-in base carries', () => {
    const arg = preamble.find((i) => i.keyword === 'ARG')?.args ?? '';
    const pinned = /^NODE_IMAGE=node:(\d+\.\d+\.\d+)-(\w+)-slim@sha256:[0-9a-f]{64}$/.exec(arg);
    expect(pinned, arg).not.toBeNull();
    expect(pinned?.[1]).toBe(BASE_RECIPE.node.version);
    expect(pinned?.[2]).toBe(BASE_RECIPE.debian.suite);
    expect(stages.map((s) => s.name)).toEqual(['manifests', 'build', 'runtime']);
    for (const s of stages) expect(s.base, s.name).toBe('${NODE_IMAGE}');
  });

  it('installs with npm ci from the lockfile and compiles this workspace and the workspace packages it imports', () => {
    const build = stage(stages, 'build');
    const runs = all(build, 'RUN').map((i) => i.args);
    expect(runs.some((r) => /^npm ci\b/.test(r) && r.includes(`-w services/${component}`) && r.includes('--include-workspace-root'))).toBe(
      true,
    );
    const tsc = runs.find((r) => r.startsWith('npx tsc --build'));
    const projects = (tsc ?? '').replace('npx tsc --build', '').trim().split(/\s+/);
    expect(projects.sort()).toEqual(compiled.map((d) => `services/${d}`).sort());
    const copied = all(build, 'COPY')
      .filter((i) => !i.args.startsWith('--from'))
      .map((i) => i.args.split(/\s+/)[0]);
    for (const dir of compiled) expect(copied, dir).toContain(`services/${dir}/`);
    expect(copied).toContain('tsconfig.base.json');
    expect(all(build, 'COPY').find((i) => i.args.startsWith('--from=manifests'))).toBeDefined();
  });

  it('copies only paths that exist and that .dockerignore keeps in the context', () => {
    for (const s of stages) {
      for (const copy of all(s, 'COPY').filter((i) => !i.args.startsWith('--from'))) {
        const sources = copy.args.split(/\s+/).slice(0, -1);
        for (const source of sources) {
          if (source === '.') continue;
          expect(existsSync(join(REPO_ROOT, source)), `${s.name}: COPY ${source}`).toBe(true);
          expect(isIgnored(source.replace(/\/$/, ''), dockerignore), `${s.name}: ${source} is excluded by .dockerignore`).toBe(false);
        }
      }
    }
  });

  it('installs production dependencies only, and copies every compiled workspace into the runtime image', () => {
    const runtime = stage(stages, 'runtime');
    const install = all(runtime, 'RUN').find((i) => i.args.startsWith('npm ci'));
    expect(install?.args).toContain('--omit=dev');
    expect(install?.args).toContain(`-w services/${component}`);
    const fromBuild = all(runtime, 'COPY')
      .filter((i) => i.args.startsWith('--from=build'))
      .map((i) => i.args.split(/\s+/).slice(1));
    for (const dir of compiled) expect(fromBuild, dir).toContainEqual([`/app/services/${dir}/dist/`, `services/${dir}/dist/`]);
    expect(all(runtime, 'ENV').map((i) => i.args)).toContain('NODE_ENV=production');
  });

  it('runs as the non-root numeric user the chart expects, node as PID 1 on SIGTERM', () => {
    const runtime = stage(stages, 'runtime');
    const users = all(runtime, 'USER');
    expect(users).toHaveLength(1);
    const [uid, gid] = (users[0]?.args ?? '').split(':').map(Number);
    const values = parse(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')) as {
      podSecurityContext: { runAsUser: number; runAsGroup: number };
    };
    expect(uid).toBe(values.podSecurityContext.runAsUser);
    expect(gid).toBe(values.podSecurityContext.runAsGroup);
    expect(uid).toBeGreaterThan(0);
    expect(all(runtime, 'RUN').some((r) => r.args.includes(`useradd --system --uid ${uid}`))).toBe(true);
    expect(runtime.instructions.at(-1)?.keyword).toBe('CMD');
    // Exec form: JSON array, node itself is PID 1 and receives SIGTERM (no shell, no npm in between).
    const cmd = JSON.parse(all(runtime, 'CMD')[0]?.args ?? 'null') as unknown;
    expect(cmd).toEqual(['node', 'dist/main.js']);
    expect(all(runtime, 'ENTRYPOINT')).toEqual([]);
    expect(all(runtime, 'STOPSIGNAL').map((i) => i.args)).toEqual(['SIGTERM']);
    expect(all(runtime, 'WORKDIR').at(-1)?.args).toBe(`/app/services/${component}`);
    expect(existsSync(join(REPO_ROOT, 'services', component, 'src', 'main.ts'))).toBe(true);
    expect(readPackage(component).scripts?.start).toBe('node dist/main.js');
  });

  it('documents the ports it listens on', () => {
    const exposed = all(stage(stages, 'runtime'), 'EXPOSE').flatMap((i) => i.args.split(/\s+/));
    expect(exposed.sort()).toEqual([...EXPOSED[component]].sort());
  });
});

describe('.dockerignore', () => {
  it('keeps dependencies, build output and VCS data out of the context, and the sources in', () => {
    for (const excluded of [
      'node_modules',
      'services/writer/node_modules',
      'services/writer/dist',
      '.git',
      'test-results',
      'services/writer/test/writer.int.test.ts',
      'services/writer/README.md',
    ]) {
      expect(isIgnored(excluded, dockerignore), excluded).toBe(true);
    }
    for (const kept of [
      'package.json',
      'package-lock.json',
      'tsconfig.base.json',
      'services/writer/src/main.ts',
      'services/contract/package.json',
    ]) {
      expect(isIgnored(kept, dockerignore), kept).toBe(false);
    }
  });
});
