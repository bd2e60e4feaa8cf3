import type { BenchSuite } from './suite.js';
import { ingestionSuite } from './suites/ingestion.js';
import { writerSuite } from './suites/writer.js';
import { liveGatewaySuite } from './suites/live-gateway.js';
import { gatewayFloorSuite } from './suites/gateway-floor.js';
import { fanoutSuite } from './suites/fanout.js';
import { fanoutWindowSuite } from './suites/fanout-window.js';
import { raceStartSuite } from './suites/race-start.js';
import { directusLoginSuite } from './suites/directus-login.js';
import { reconnectStormSuite } from './suites/reconnect-storm.js';
import { redisClusterSuite } from './suites/redis-cluster.js';

// Every benchmark of `make bench`, in the order they run. Register a suite with one line here.
export const suites: BenchSuite[] = [
  ingestionSuite,
  writerSuite,
  liveGatewaySuite,
  gatewayFloorSuite,
  fanoutSuite,
  fanoutWindowSuite,
  directusLoginSuite,
  raceStartSuite,
  reconnectStormSuite,
  redisClusterSuite,
];
