import { createLogger, loadConfig, runServices } from '@pitwall/platform';
import { liveGatewayEnv } from './config.js';
import { createLiveGateway } from './gateway.js';

// Process entry: configuration only from the environment (CONTRACT.md), then run until SIGTERM:
// readiness fails, no new connections, every socket closes with 1001, the group is destroyed,
// Redis closes, all under GATEWAY_SHUTDOWN_TIMEOUT_MS.
const config = loadConfig('live-gateway', liveGatewayEnv);
const logger = createLogger('live-gateway', config.LOG_LEVEL);
const gateway = createLiveGateway(config, { logger });
logger.info(
  {
    instance: config.INSTANCE_ID,
    group: gateway.consumer.group,
    shards: config.STREAM_SHARDS,
    tokenVerification: config.DIRECTUS_SECRET !== undefined ? 'local HS256' : 'Directus /users/me',
  },
  'starting live gateway',
);
await runServices({
  logger,
  services: gateway.services,
  shutdownTimeoutMs: config.GATEWAY_SHUTDOWN_TIMEOUT_MS,
  beforeShutdown: () => gateway.beginDrain(),
});
