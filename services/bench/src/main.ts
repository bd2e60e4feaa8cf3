import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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

function rows(results: BenchResult[]): string[] {
  return results
    .map((r) => {
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
      ].join(' | ');
    })
    .map((cells) => `| ${cells} |`);
}

function table(results: BenchResult[]): string {
  const header = ['suite', 'figure', 'value', 'baseline (same run)', 'ratio', 'target', 'notes'];
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows(results)].join('\n');
}

/**
 * docs/benchmarks.md after a run of some suites only (`ONLY=...`, not QUICK): their rows replaced by
 * the new ones (where the first of them stood, or at the end of the table), the other suites' rows and
 * facts kept, and a line saying which rows were re-measured when.
 */
function mergeInto(previous: string, suitesRun: readonly string[], results: BenchResult[], facts: string[]): string {
  const lines = previous.trimEnd().split('\n');
  const ofSuite = (line: string): string | undefined => /^\| ([a-z0-9-]+) \|/.exec(line)?.[1];
  const firstOld = lines.findIndex((line) => suitesRun.includes(ofSuite(line) ?? ''));
  const kept = lines.filter((line) => !suitesRun.includes(ofSuite(line) ?? ''));
  const lastRow = kept.reduce((last, line, i) => (line.startsWith('| ') ? i : last), -1);
  const at = firstOld >= 0 ? Math.min(firstOld, lastRow + 1) : lastRow + 1;
  kept.splice(at, 0, ...rows(results));
  const note = `- rows of ${suitesRun.join(', ')} re-measured by \`make bench ONLY=${suitesRun.join(',')}\` (${facts.at(-1) ?? ''})`;
  const firstRow = kept.findIndex((line) => line.startsWith('| '));
  kept.splice(Math.max(0, firstRow - 1), 0, note);
  return `${kept.join('\n')}\n`;
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
  const file = join(REPO_ROOT, 'docs', 'benchmarks.md');
  if (!only && !quick) {
    mkdirSync(join(REPO_ROOT, 'docs'), { recursive: true });
    writeFileSync(file, report);
    process.stdout.write('\nwritten to docs/benchmarks.md\n');
  } else if (only && !quick && existsSync(file)) {
    writeFileSync(
      file,
      mergeInto(
        readFileSync(file, 'utf8'),
        selected.map((s) => s.name),
        results,
        facts,
      ),
    );
    process.stdout.write(`\nrows of ${only.join(', ')} replaced in docs/benchmarks.md\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
