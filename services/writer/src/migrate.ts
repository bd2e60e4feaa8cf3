import { createLogger, loadConfig } from '@pitwall/platform';
import { writerEnv } from './config.js';
import { createPool } from './postgres.js';
import { runMigrations } from './schema/migrations.js';
import { PartitionMaintainer } from './schema/partitions.js';

// `npm run migrate -w services/writer`: applies the migrations and creates the partitions ahead,
// exactly what the writer does at start-up, then exits (0 on success).
const migrateEnv = {
  DATABASE_URL: writerEnv.DATABASE_URL,
  LOG_LEVEL: writerEnv.LOG_LEVEL,
  PARTITION_INTERVAL: writerEnv.PARTITION_INTERVAL,
  PARTITIONS_AHEAD: writerEnv.PARTITIONS_AHEAD,
  RETENTION_DAYS: writerEnv.RETENTION_DAYS,
};
const config = loadConfig('writer-migrate', migrateEnv);
const logger = createLogger('writer-migrate', config.LOG_LEVEL);
const pool = createPool({
  databaseUrl: config.DATABASE_URL,
  applicationName: 'pitwall-writer-migrate',
  statementTimeoutMs: 600_000,
  logger,
});
try {
  const applied = await runMigrations(config.DATABASE_URL, logger);
  logger.info({ applied }, applied.length > 0 ? 'migrations applied' : 'schema is current');
  const result = await new PartitionMaintainer(pool, config, logger).maintain();
  logger.info({ partitions: result.partitions, skipped: result.skipped }, 'partitions ready');
  if (result.failures.length > 0) throw new Error(`partition maintenance failed: ${result.failures.join('; ')}`);
} catch (err) {
  logger.fatal({ err }, 'migration failed');
  process.exitCode = 1;
} finally {
  await pool.end();
}
