// Pure calendar arithmetic of the partitions of `positions` (UTC), kept apart so it is unit-tested.

export type PartitionInterval = 'day' | 'week' | 'month';

const DAY_MS = 86_400_000;

/** Start (UTC ms) of the interval that contains `ms`: midnight, Monday midnight, or the 1st. */
export function intervalStart(interval: PartitionInterval, ms: number): number {
  const date = new Date(ms);
  const midnight = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate());
  switch (interval) {
    case 'day':
      return midnight;
    case 'week':
      return midnight - ((date.getUTCDay() + 6) % 7) * DAY_MS;
    case 'month':
      return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
  }
}

/** Start of the interval after the one starting at `start`. */
export function nextIntervalStart(interval: PartitionInterval, start: number): number {
  switch (interval) {
    case 'day':
      return start + DAY_MS;
    case 'week':
      return start + 7 * DAY_MS;
    case 'month': {
      const date = new Date(start);
      return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
    }
  }
}

export interface PartitionRange {
  /** Inclusive lower bound, UTC ms (-Infinity for MINVALUE). */
  from: number;
  /** Exclusive upper bound, UTC ms (Infinity for MAXVALUE). */
  to: number;
}

/** Name of the partition that starts at `from`: positions_pYYYYMMDD. */
export function partitionName(from: number): string {
  return `positions_p${new Date(from).toISOString().slice(0, 10).replaceAll('-', '')}`;
}

/** A timestamptz bound as pg_get_expr prints it with TimeZone UTC: '2026-11-27 00:00:00+00'. */
function parseBound(text: string): number | undefined {
  const value = text.trim();
  if (value === 'MINVALUE') return -Infinity;
  if (value === 'MAXVALUE') return Infinity;
  const match = /^'(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?)\+00'$/.exec(value);
  if (!match) return undefined;
  const ms = Date.parse(`${match[1]}T${match[2]}Z`);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * The range of a partition from its bound expression (pg_get_expr of relpartbound, TimeZone UTC);
 * `default` for the DEFAULT partition, undefined when it is not a range this code understands.
 */
export function parsePartitionBound(expression: string): PartitionRange | 'default' | undefined {
  if (expression.trim() === 'DEFAULT') return 'default';
  const match = /^FOR VALUES FROM \((.+)\) TO \((.+)\)$/.exec(expression.trim());
  if (!match?.[1] || !match[2]) return undefined;
  const from = parseBound(match[1]);
  const to = parseBound(match[2]);
  return from === undefined || to === undefined ? undefined : { from, to };
}

export function overlaps(a: PartitionRange, b: PartitionRange): boolean {
  return a.from < b.to && b.from < a.to;
}

/** SQL literal of a bound, e.g. '2026-11-27T00:00:00.000Z'. */
export function boundLiteral(ms: number): string {
  return `'${new Date(ms).toISOString()}'`;
}
