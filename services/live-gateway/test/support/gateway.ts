import { createLogger, parseConfig } from '@pitwall/platform';
import { liveGatewayEnv } from '../../src/config.js';
import { createLiveGateway, type LiveGateway } from '../../src/gateway.js';

export interface RunningGateway {
  gateway: LiveGateway;
  /** ws://127.0.0.1:<port> */
  url: string;
  metricsUrl: string;
  stop(): Promise<void>;
}

/**
 * The whole gateway in this process on free ports (GATEWAY_PORT=0, METRICS_PORT=0), started in
 * order and closed in reverse as runServices would, without its signal handlers.
 */
export async function startGatewayInProcess(env: Record<string, string>): Promise<RunningGateway> {
  const config = parseConfig(liveGatewayEnv, { GATEWAY_PORT: '0', METRICS_PORT: '0', LOG_LEVEL: 'silent', ...env });
  const gateway = createLiveGateway(config, { logger: createLogger('live-gateway', config.LOG_LEVEL), host: '127.0.0.1' });
  const started: typeof gateway.services = [];
  const stop = async () => {
    gateway.beginDrain();
    for (const service of started.reverse()) await service.close();
  };
  try {
    for (const service of gateway.services) {
      await service.start();
      started.push(service);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    gateway,
    url: `ws://127.0.0.1:${gateway.server.port}`,
    metricsUrl: `http://127.0.0.1:${gateway.health.boundPort}`,
    stop,
  };
}
