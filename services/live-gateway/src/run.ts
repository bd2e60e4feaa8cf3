// The service itself, imported by main.ts once tracing is set up.
import { createLogger, loadConfig, runServices } from '@pitwall/platform';
import { liveGatewayEnv } from './config.js';
import { createLiveGateway, type LiveGateway } from './gateway.js';
import { EXIT_UWS_NOT_NATIVE } from './server/native-uws.js';
import { UwsNotNativeError } from './server/uws-not-native-error.js';

// Process entry: configuration only from the environment (docs/interfaces.md), then run until SIGTERM:
// readiness fails, no new connections, every socket closes with 1001, the group is destroyed,
// Redis closes, all under GATEWAY_SHUTDOWN_TIMEOUT_MS.
const config = loadConfig('live-gateway', liveGatewayEnv);
const logger = createLogger('live-gateway', config.LOG_LEVEL);
let gateway: LiveGateway;
try {
  gateway = createLiveGateway(config, { logger });
} catch (err) {
  if (!(err instanceof UwsNotNativeError)) throw err;
  // Refuse to run an order of magnitude slower than planned; the orchestrator shows the reason.
  logger.fatal({ err: { code: err.code, message: err.message } }, 'refusing to start');
  process.stderr.write(`live-gateway: ${err.message}\n`);
  process.exit(EXIT_UWS_NOT_NATIVE);
}
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
