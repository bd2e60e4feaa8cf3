import pg from 'pg';

/** How the writer reacts to a failed PostgreSQL operation. */
export type PgFailure =
  /** A key already exists: the batch is retried on the path that skips duplicates. */
  | 'duplicate'
  /** Some row's values were rejected: the batch is split to find and dead-letter it. */
  | 'data'
  /** Anything else (outage, restart, lock or serialization conflict): retried with backoff. */
  | 'transient';

/** The SQLSTATE of an error the server sent; undefined for client-side and network errors. */
export function sqlState(err: unknown): string | undefined {
  return err instanceof pg.DatabaseError ? err.code : undefined;
}

/**
 * Classifies an error from pg. Only errors a row's own values cause count as `data` (SQLSTATE class
 * 22, and not-null violations); a check violation (23514) is the partition constraint of the
 * default partition while a partition is attached concurrently, so it is transient. Everything
 * without a SQLSTATE (refused or reset connections, timeouts) is transient.
 */
export function classifyPgError(err: unknown): PgFailure {
  const state = sqlState(err);
  if (state === undefined) return 'transient';
  if (state === '23505') return 'duplicate';
  if (state.startsWith('22') || state === '23502') return 'data';
  return 'transient';
}

/**
 * True when the server could not be reached or went away (as opposed to rejecting a statement):
 * network errors, connection exceptions (08), shutdown or start-up in progress (57P0x), too many
 * connections (53300).
 */
export function isConnectionError(err: unknown): boolean {
  const state = sqlState(err);
  if (state === undefined) return true;
  return state.startsWith('08') || state.startsWith('57P0') || state === '53300';
}

/** A short description for logs and readiness reasons. */
export function describePgError(err: unknown): string {
  const state = sqlState(err);
  const message = err instanceof Error ? err.message : String(err);
  return state ? `${state} ${message}` : message;
}
