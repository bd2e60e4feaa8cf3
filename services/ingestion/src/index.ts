export { ingestionEnv, ingestionConfigProblems, type IngestionConfig } from './config.js';
export { createIngestion, type IngestionParts } from './app.js';
export { IngestionMetrics } from './metrics.js';
export { positionCodec } from './encoding/position-codec.js';
export { BackpressureMonitor } from './backpressure/backpressure-monitor.js';
export { PositionStore, type Admission, type PositionStoreOptions } from './store/position-store.js';
