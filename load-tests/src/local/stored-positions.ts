import pg from 'pg';
import type { AckedRecord } from '@pitwall/simulator';

/** The simulator's acknowledged set compared with `positions`. */
export interface StoredCheck {
  acked: number;
  /** Acknowledged (IMEI, device time) with no row. */
  missing: number;
  /** Acknowledged with more than one row (the table's key forbids it; counted anyway). */
  duplicated: number;
  examples: AckedRecord[];
}

const CHUNK = 50_000;

/** Looks every acknowledged record up in `positions` by its key (device_id, recorded_at). */
export async function checkStored(databaseUrl: string, acked: readonly AckedRecord[]): Promise<StoredCheck> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const result: StoredCheck = { acked: acked.length, missing: 0, duplicated: 0, examples: [] };
  try {
    for (let i = 0; i < acked.length; i += CHUNK) {
      const chunk = acked.slice(i, i + CHUNK);
      const res = await client.query<{ device_id: string; ms: string; n: string }>(
        `SELECT a.device_id, a.ms::text AS ms, count(p.device_id)::text AS n
           FROM unnest($1::text[], $2::bigint[]) AS a(device_id, ms)
           LEFT JOIN positions p ON p.device_id = a.device_id AND p.recorded_at = timestamptz 'epoch' + a.ms * interval '1 millisecond'
          GROUP BY a.device_id, a.ms
         HAVING count(p.device_id) <> 1`,
        [chunk.map((r) => r.imei), chunk.map((r) => String(r.timestampMs))],
      );
      for (const row of res.rows) {
        if (row.n === '0') result.missing++;
        else result.duplicated++;
        if (result.examples.length < 5) result.examples.push({ imei: row.device_id, timestampMs: Number(row.ms) });
      }
    }
    return result;
  } finally {
    await client.end();
  }
}

/** Polls until nothing acknowledged is missing or `timeoutMs` passed; returns the last check. */
export async function waitUntilStored(databaseUrl: string, acked: readonly AckedRecord[], timeoutMs: number): Promise<StoredCheck> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const check = await checkStored(databaseUrl, acked);
    if (check.missing === 0 || Date.now() > deadline) return check;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
