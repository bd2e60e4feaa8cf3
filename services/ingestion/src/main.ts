import { startTracing } from '@pitwall/platform/tracing';

// Process entry. Tracing starts before anything else is imported: its instrumentations patch http, pg
// and ioredis as the service loads them (nothing happens unless an OTEL exporter is configured).
await startTracing('ingestion');
await import('./run.js');
