import pg from 'pg';
import type { AckedRecord } from '@pitwall/simulator';
import { waitFor } from '@pitwall/testkit';

export interface StoredCheck {
  acked: number;
  /** Acknowledged records with no row. */
  missing: AckedRecord[];
  /** Acknowledged records with more than one row. */
  duplicated: AckedRecord[];
}

/** Compares the simulator's acknowledged (IMEI, device time) set with `positions`. */
export async function checkStored(databaseUrl: string, acked: readonly AckedRecord[]): Promise<StoredCheck> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const res = await client.query<{ device_id: string; ms: string; n: string }>(
      `SELECT a.device_id, a.ms::text AS ms, count(p.device_id)::text AS n
         FROM unnest($1::text[], $2::bigint[]) AS a(device_id, ms)
         LEFT JOIN positions p ON p.device_id = a.device_id AND p.recorded_at = timestamptz 'epoch' + a.ms * interval '1 millisecond'
        GROUP BY a.device_id, a.ms`,
      [acked.map((r) => r.imei), acked.map((r) => String(r.timestampMs))],
    );
    const missing: AckedRecord[] = [];
    const duplicated: AckedRecord[] = [];
    for (const row of res.rows) {
      const record = { imei: row.device_id, timestampMs: Number(row.ms) };
      if (row.n === '0') missing.push(record);
      else if (row.n !== '1') duplicated.push(record);
    }
    return { acked: acked.length, missing, duplicated };
  } finally {
    await client.end();
  }
}

/** Waits until every acknowledged record is stored, then asserts none is stored twice. */
export async function expectAllStoredOnce(databaseUrl: string, acked: readonly AckedRecord[], timeoutMs = 60_000): Promise<StoredCheck> {
  let last: StoredCheck | undefined;
  try {
    await waitFor(
      `all ${acked.length} acknowledged positions in PostgreSQL`,
      async () => {
        last = await checkStored(databaseUrl, acked);
        return last.missing.length === 0;
      },
      { timeoutMs, intervalMs: 250 },
    );
  } catch (err) {
    throw new Error(
      `${err instanceof Error ? err.message : String(err)}; missing ${last?.missing.length ?? '?'} of ${acked.length}, e.g. ${JSON.stringify(last?.missing.slice(0, 3))}`,
      { cause: err },
    );
  }
  if (!last || last.duplicated.length > 0) throw new Error(`stored more than once: ${JSON.stringify(last?.duplicated.slice(0, 5))}`);
  return last;
}

/** Rows in `positions`. */
export async function countRows(databaseUrl: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const res = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM positions');
    return Number(res.rows[0]?.n ?? 0);
  } finally {
    await client.end();
  }
}
