import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHART_DIR } from './support/chart.js';
import { valuesTable } from './support/values-docs.js';

/**
 * charts/pitwall/README.md carries the values table generated from values.yaml's comments (helm-docs
 * layout). Regenerate it with `UPDATE_CHART_README=1 npx vitest run charts/pitwall/tests/readme.test.ts`.
 */

const README = join(CHART_DIR, 'README.md');
const START = '<!-- values:start -->';
const END = '<!-- values:end -->';

function withTable(text: string, table: string): string {
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${README} has no ${START} ... ${END} section`);
  return `${text.slice(0, start + START.length)}\n${table}\n${text.slice(end)}`;
}

describe('the chart README', () => {
  it('lists every value of values.yaml with its type, default and comment, as generated', () => {
    const text = readFileSync(README, 'utf8');
    const expected = withTable(text, valuesTable());
    if (process.env.UPDATE_CHART_README === '1' && expected !== text) writeFileSync(README, expected);
    else
      expect(text, 'the README drifted from values.yaml: UPDATE_CHART_README=1 npx vitest run charts/pitwall/tests/readme.test.ts').toBe(
        expected,
      );
  });

  it('notices a setting whose comment changed (the check can fail)', () => {
    const table = valuesTable();
    expect(table).toContain('| ingestion.replicaCount | int | `2` |');
    const edited = readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8').replace(
      '# Number of pods. Devices reconnect',
      '# Pods. Devices reconnect',
    );
    const dir = mkdtempSync(join(tmpdir(), 'pitwall-readme-'));
    try {
      writeFileSync(join(dir, 'values.yaml'), edited);
      expect(valuesTable(join(dir, 'values.yaml'))).not.toBe(table);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
