import type { Logger } from './logger.js';

/** A long-running part of a service: started once, closed once (close is idempotent). */
export interface Service {
  readonly name: string;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Wraps a close function so that concurrent and repeated calls share one run. */
export function idempotent(close: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= close());
}

export interface RunOptions {
  logger: Logger;
  /** Started in order, closed in reverse order. */
  services: readonly Service[];
  /** Hard limit on the whole shutdown; the process exits 1 when it is exceeded. */
  shutdownTimeoutMs?: number;
  /** Called first on SIGTERM/SIGINT, before any service closes (for example: fail readiness). */
  beforeShutdown?: () => void | Promise<void>;
}

export interface Runner {
  /** Closes every started service in reverse order under the hard timeout, then exits. */
  shutdown(reason: string): Promise<void>;
}

/**
 * Starts the services of one process and shuts them down in order on SIGTERM or SIGINT (or when a
 * start fails), under a hard timeout so a stuck close can never keep a pod alive.
 */
export async function runServices(options: RunOptions): Promise<Runner> {
  const { logger, services } = options;
  const timeoutMs = options.shutdownTimeoutMs ?? 25_000;
  const started: Service[] = [];
  let shuttingDown: Promise<void> | undefined;

  const closeAll = async (): Promise<boolean> => {
    let clean = true;
    for (const service of [...started].reverse()) {
      try {
        await service.close();
        logger.info({ part: service.name }, 'closed');
      } catch (err) {
        clean = false;
        logger.error({ err, part: service.name }, 'close failed');
      }
    }
    return clean;
  };

  const shutdown = (reason: string, exitCode = 0): Promise<void> =>
    (shuttingDown ??= (async () => {
      logger.info({ reason }, 'shutting down');
      const timer = setTimeout(() => {
        logger.error({ timeoutMs }, 'shutdown timed out; exiting');
        process.exit(1);
      }, timeoutMs);
      timer.unref();
      try {
        await options.beforeShutdown?.();
      } catch (err) {
        logger.error({ err }, 'beforeShutdown failed');
      }
      const clean = await closeAll();
      clearTimeout(timer);
      logger.info('shutdown complete');
      process.exit(clean ? exitCode : 1);
    })());

  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.on('unhandledRejection', (err) => {
    logger.fatal({ err }, 'unhandled rejection');
    void shutdown('unhandledRejection', 1);
  });
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception');
    void shutdown('uncaughtException', 1);
  });

  for (const service of services) {
    try {
      await service.start();
      started.push(service);
      logger.info({ part: service.name }, 'started');
    } catch (err) {
      logger.fatal({ err, part: service.name }, 'start failed');
      await shutdown(`start of ${service.name} failed`, 1);
    }
  }
  return { shutdown: (reason) => shutdown(reason) };
}
