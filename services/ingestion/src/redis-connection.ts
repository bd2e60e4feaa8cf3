import { idempotent, type Logger, type Service } from '@pitwall/platform';
import { closeStreamClient, createStreamClient, type RedisTarget, type StreamClient } from '@pitwall/streams';

/**
 * The Redis client of ingestion (standalone, or a cluster client with REDIS_CLUSTER_NODES). Commands fail at once while Redis is unreachable (no offline queue,
 * no silent resend after a reconnect): a packet is acknowledged only on a confirmed write, and a
 * failed one is simply resent by its device.
 */
export class RedisConnection implements Service {
  readonly name = 'redis';
  readonly client: StreamClient;

  constructor(
    target: RedisTarget,
    logger: Logger,
    private readonly startTimeoutMs = 10_000,
  ) {
    this.client = createStreamClient(target, {
      name: 'ingestion',
      logger,
      lazyConnect: true,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
    });
    this.logger = logger;
  }

  private readonly logger: Logger;

  /** Runs `task` each time the client is (again) ready; a failure is logged at debug (the caller copes without it). */
  onReady(task: () => Promise<void>): void {
    this.client.on('ready', () => {
      task().catch((err: unknown) => this.logger.debug({ err }, 'on-ready task failed'));
    });
  }

  /** Connects; if Redis is not there yet, starts anyway (readiness reports it, the client keeps retrying). */
  async start(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const connected = this.client.connect().then(
      () => true,
      () => false,
    );
    const ok = await Promise.race([
      connected,
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.startTimeoutMs))),
    ]);
    clearTimeout(timer);
    if (!ok) this.logger.warn('Redis not reachable yet; packets are not acknowledged until it is');
  }

  close = idempotent(() => closeStreamClient(this.client));
}
