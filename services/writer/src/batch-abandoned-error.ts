/**
 * A batch given up unacknowledged because the writer is shutting down while PostgreSQL or Redis is
 * failing. Its entries stay pending and are written after a restart or by another writer. Code
 * `BATCH_ABANDONED`.
 */
export class BatchAbandonedError extends Error {
  readonly code = 'BATCH_ABANDONED';
  override readonly name = 'BatchAbandonedError';
}
