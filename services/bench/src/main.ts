import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '@pitwall/testkit';
import { ratioOf, type BenchResult } from './suite.js';
import { suites } from './suites.js';

// `make bench [ONLY=suite] [QUICK=1]`: runs every suite, prints one table, writes docs/benchmarks.md.

function version(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8' }).trim().split('\n')[0] ?? '?';
  } catch {
    return 'not found';
  }
}

function machineFacts(): string[] {
  return [
    `CPU: ${cpus()[0]?.model ?? '?'} x ${cpus().length}`,
    `memory: ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `Node ${process.version}`,
    version('redis-server', ['--version']),
    version('postgres', ['--version']),
    `date: ${new Date().toISOString()}`,
  ];
}

function format(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function table(results: BenchResult[]): string {
  const rows = results.map((r) => {
    const ratio = ratioOf(r);
    const target = r.targetRatio === undefined ? '' : `${ratio >= r.targetRatio ? 'met' : 'MISSED'} (>= ${format(r.targetRatio)})`;
    return [
      r.suite,
      r.figure,
      `${format(r.value)} ${r.unit}`,
      `${r.baseline.name}: ${format(r.baseline.value)} ${r.unit}`,
      format(ratio),
      target,
      r.notes ?? '',
    ];
  });
  const header = ['suite', 'figure', 'value', 'baseline (same run)', 'ratio', 'target', 'notes'];
  return [header, header.map(() => '---'), ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

async function main(): Promise<void> {
  const only = process.env.ONLY?.split(',').filter(Boolean);
  const quick = process.env.QUICK === '1';
  const selected = suites.filter((s) => !only || only.includes(s.name));
  if (selected.length === 0) throw new Error(`no benchmark suite selected (have: ${suites.map((s) => s.name).join(', ')})`);
  const results: BenchResult[] = [];
  for (const suite of selected) {
    process.stdout.write(`\n== ${suite.name} ==\n`);
    const started = Date.now();
    results.push(...(await suite.run({ quick, log: (m) => process.stdout.write(`  ${m}\n`) })));
    process.stdout.write(`  (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  }
  const facts = machineFacts();
  const report = [
    '# Benchmarks',
    '',
    'Written by `make bench`. Every figure is measured beside its baseline in the same run on the same machine; the ratio is what to compare across machines.',
    '',
    ...facts.map((f) => `- ${f}`),
    '',
    table(results),
    '',
  ].join('\n');
  process.stdout.write(`\n${table(results)}\n\n${facts.join('\n')}\n`);
  if (!only && !quick) {
    mkdirSync(join(REPO_ROOT, 'docs'), { recursive: true });
    writeFileSync(join(REPO_ROOT, 'docs', 'benchmarks.md'), report);
    process.stdout.write('\nwritten to docs/benchmarks.md\n');
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
