import { fileURLToPath } from 'node:url';
import type { Logger } from '@pitwall/platform';
import { runner } from 'node-pg-migrate';

/** Folder of the migrations next to this module: compiled .js in dist, .ts sources in tests. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));
/** Bookkeeping table of node-pg-migrate for the writer's schema. */
export const MIGRATIONS_TABLE = 'writer_migrations';
// Dot files, declaration files and source maps that tsc writes beside the compiled migrations.
const IGNORE_PATTERN = '(\\..*|.*\\.d\\.ts|.*\\.map)';

/**
 * Applies every pending migration in one transaction. node-pg-migrate holds its advisory lock
 * meanwhile; `wait` makes writers that start together queue behind the first instead of failing.
 * Returns the names of the migrations applied now (none when the schema is current).
 */
export async function runMigrations(databaseUrl: string, logger: Logger): Promise<string[]> {
  const log = logger.child({ part: 'migrations' });
  const applied = await runner({
    databaseUrl,
    dir: MIGRATIONS_DIR,
    ignorePattern: IGNORE_PATTERN,
    migrationsTable: MIGRATIONS_TABLE,
    direction: 'up',
    checkOrder: true,
    singleTransaction: true,
    advisoryLockMode: 'wait',
    logger: {
      debug: (msg) => log.debug(msg),
      info: (msg) => log.debug(msg),
      warn: (msg) => log.warn(msg),
      // Failures surface as the thrown error (logged by the caller); its own lines repeat each retry.
      error: (msg) => log.debug(msg),
    },
  });
  return applied.map((m) => m.name);
}
