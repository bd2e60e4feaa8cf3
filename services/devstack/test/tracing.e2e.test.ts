import { connect } from 'node:net';
import {
  createEventViewer,
  DirectusRest,
  login,
  sharedDirectusAdmin,
  sharedDirectusSecret,
  sharedDirectusSeed,
  sharedDirectusUrl,
} from '@pitwall/business-plane';
import { CODEC_8_EXTENDED, encodeImeiHandshake, encodeTcpAvlPacket } from '@pitwall/teltonika';
import {
  createTestDatabase,
  freePort,
  OtlpReceiver,
  sharedRedisUrl,
  startService,
  uniqueName,
  waitFor,
  type ReceivedSpan,
  type ServiceProcess,
} from '@pitwall/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';

/**
 * One position is one trace: the three built services export to an OTLP receiver in this test
 * (http/protobuf, every trace sampled), a device sends one packet, a viewer watches its event. The
 * packet's span in ingestion is the root; the writer's batch (read, COPY, commit, XACK) and the
 * gateway's publish continue it through the entry's `tp` field; http, pg and ioredis are traced by
 * their instrumentations. The gateway asks the run's shared Directus, where this test makes its own
 * event (running now), the device and its entry, and a viewer of that event only.
 */

const IMEI = '356307042441077';

const receiver = new OtlpReceiver();
let eventId: number;
const services: ServiceProcess[] = [];
let databaseUrl: string;
let packetTimestampMs: number;
let viewerGot: unknown;

/** An event whose window includes now, the device IMEI and its entry (label 44) in it, on the shared Directus. */
async function makeEvent(rest: DirectusRest): Promise<number> {
  const now = Date.now();
  const event = await rest.post<{ id: number }>('/items/events', {
    name: uniqueName('tracing'),
    status: 'live',
    starts_at: new Date(now - 3_600_000).toISOString(),
    ends_at: new Date(now + 3_600_000).toISOString(),
  });
  const device = await rest.post<{ id: number }>('/items/devices', { imei: IMEI, name: 'Tracing tracker' });
  await rest.post('/items/entries', { event: event.id, device: device.id, label: '44' });
  return event.id;
}

beforeAll(async () => {
  const endpoint = await receiver.start();
  const admin = sharedDirectusAdmin();
  eventId = await makeEvent(new DirectusRest(admin.url, admin.adminToken));
  const { user } = await createEventViewer(admin, [eventId]);
  databaseUrl = await createTestDatabase('tracing');
  const common = {
    REDIS_URL: sharedRedisUrl(),
    STREAM_KEY: uniqueName('tracing'),
    OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
    OTEL_TRACES_SAMPLER: 'parentbased_always_on',
    OTEL_BSP_SCHEDULE_DELAY: '100',
  };
  const [tcpPort, udpPort, gatewayPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const [ingestion, writer, gateway] = await Promise.all([
    startService(
      'ingestion',
      { ...common, INGESTION_TCP_PORT: String(tcpPort), INGESTION_UDP_PORT: String(udpPort) },
      { timeoutMs: 30_000 },
    ),
    startService(
      'writer',
      { ...common, DATABASE_URL: databaseUrl, INSTANCE_ID: 'tracing', WRITER_BATCH_WAIT_MS: '0' },
      { timeoutMs: 30_000 },
    ),
    startService(
      'live-gateway',
      {
        ...common,
        GATEWAY_PORT: String(gatewayPort),
        INSTANCE_ID: uniqueName('pod'),
        DIRECTUS_URL: sharedDirectusUrl(),
        DIRECTUS_SECRET: sharedDirectusSecret(),
        DIRECTUS_SERVICE_TOKEN: sharedDirectusSeed().serviceToken,
      },
      { timeoutMs: 30_000 },
    ),
  ]);
  services.push(ingestion, writer, gateway);

  // A viewer of the event (its token carries the pitwall_events claim).
  const { accessToken: token } = await login(sharedDirectusUrl(), user.email, user.password);
  const viewer = new WebSocket(`ws://127.0.0.1:${gatewayPort}/live?access_token=${encodeURIComponent(token)}`);
  const messages: { type: string; positions?: { device_id: string; ts: number }[] }[] = [];
  viewer.on('message', (data: Buffer) => messages.push(JSON.parse(data.toString('utf8')) as (typeof messages)[number]));
  await new Promise((resolve, reject) => {
    viewer.once('open', resolve);
    viewer.once('error', reject);
  });
  viewer.send(JSON.stringify({ type: 'subscribe', event_id: eventId, uid: 's' }));
  await waitFor('subscribed', () => messages.some((m) => m.type === 'subscribed')).catch((err: Error) => {
    throw new Error(`${err.message}: got ${JSON.stringify(messages)}`);
  });

  // A device's packet of one position.
  const device = connect({ host: '127.0.0.1', port: tcpPort });
  const acks: Buffer[] = [];
  device.on('data', (chunk: Buffer) => acks.push(chunk));
  device.write(encodeImeiHandshake(IMEI));
  await waitFor('handshake', () => Buffer.concat(acks).toString('hex') === '01');
  packetTimestampMs = Date.now() - 500;
  device.write(
    encodeTcpAvlPacket(CODEC_8_EXTENDED, [
      {
        timestampMs: packetTimestampMs,
        priority: 0,
        latE7: 436_000_000,
        lonE7: 39_000_000,
        altitudeM: 100,
        headingDeg: 45,
        satellites: 10,
        speedKmh: 200,
        eventIoId: 0,
        generationType: undefined,
        io: [],
      },
    ]),
  );
  await waitFor('acknowledged', () => Buffer.concat(acks).toString('hex') === '0100000001');
  device.destroy();
  viewerGot = await waitFor('the position at the viewer', () =>
    messages.find((m) => m.type === 'positions' && m.positions?.some((p) => p.device_id === IMEI)),
  );
  viewer.close();

  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    await waitFor(
      'the row in PostgreSQL',
      async () => (await db.query('SELECT 1 FROM positions WHERE device_id = $1', [IMEI])).rowCount === 1,
      {
        timeoutMs: 20_000,
      },
    );
  } finally {
    await db.end();
  }
  // A request the http instrumentation traces (health endpoints are left out on purpose).
  await fetch(`${writer.metricsUrl}/not-a-health-endpoint`);
  // SIGTERM: every service flushes its spans on the way out.
  for (const service of services) expect((await service.proc.stop('SIGTERM')).code).toBe(0);
}, 120_000);

afterAll(async () => {
  for (const service of services) await service.proc.stop();
  await receiver.close();
});

function one(spans: readonly ReceivedSpan[], what: string, match: (span: ReceivedSpan) => boolean): ReceivedSpan {
  const found = spans.filter(match);
  if (found.length !== 1) {
    const seen = spans.map((s) => `${s.service}/${s.name} ${s.traceId.slice(0, 8)}:${s.spanId.slice(0, 8)}<-${s.parentSpanId.slice(0, 8)}`);
    throw new Error(`expected one ${what}, found ${found.length} among:\n${seen.join('\n')}`);
  }
  return found[0] as ReceivedSpan;
}

describe('a position’s trace across ingestion, writer and live gateway', () => {
  it('reached the viewer and PostgreSQL (the flow the spans describe); only traces were exported (no OTLP metrics or logs)', () => {
    expect(viewerGot).toBeDefined();
    expect(receiver.refused).toEqual([]);
  });

  it('starts at the device’s packet in ingestion, with its XADD (ioredis) below it', () => {
    const packet = one(receiver.spans, 'ingestion.packet', (s) => s.name === 'ingestion.packet' && s.service === 'pitwall-ingestion');
    expect(packet.parentSpanId).toBe('');
    expect(packet.attributes['pitwall.records']).toBe(1);
    const xadd = receiver.spans.filter((s) => s.traceId === packet.traceId && s.scope.includes('ioredis'));
    expect(xadd.length).toBeGreaterThanOrEqual(1);
    for (const span of xadd) expect(span.parentSpanId).toBe(packet.spanId);
  });

  it('continues in the writer: the batch below the packet, read, COPY, commit and XACK below the batch, pg below them', () => {
    const packet = one(receiver.spans, 'ingestion.packet', (s) => s.name === 'ingestion.packet');
    const trace = receiver.spans.filter((s) => s.traceId === packet.traceId);
    const batch = one(trace, 'writer.batch', (s) => s.name === 'writer.batch');
    expect(batch.service).toBe('pitwall-writer');
    expect(batch.parentSpanId).toBe(packet.spanId);
    for (const step of ['writer.read', 'writer.copy', 'writer.commit', 'writer.xack']) {
      expect(one(trace, step, (s) => s.name === step).parentSpanId, step).toBe(batch.spanId);
    }
    const pgSpans = trace.filter((s) => s.scope.includes('instrumentation-pg'));
    expect(pgSpans.length).toBeGreaterThanOrEqual(1);
    const writerSpanIds = new Set(trace.filter((s) => s.service === 'pitwall-writer').map((s) => s.spanId));
    for (const span of pgSpans) expect(writerSpanIds.has(span.parentSpanId)).toBe(true);
  });

  it('ends at the gateway’s publish to the event’s viewers, below the packet', () => {
    const packet = one(receiver.spans, 'ingestion.packet', (s) => s.name === 'ingestion.packet');
    const publish = one(receiver.spans, 'live-gateway.publish', (s) => s.name === 'live-gateway.publish');
    expect(publish.service).toBe('pitwall-live-gateway');
    expect(publish.traceId).toBe(packet.traceId);
    expect(publish.parentSpanId).toBe(packet.spanId);
    expect(publish.attributes).toMatchObject({ 'pitwall.device_id': IMEI, 'pitwall.event_id': eventId, 'pitwall.recipients': 1 });
  });

  it('traces http requests, but not health checks and scrapes', () => {
    const http = receiver.spans.filter((s) => s.scope.includes('instrumentation-http'));
    expect(http.map((s) => `${s.service} ${String(s.attributes['url.path'] ?? s.attributes['http.target'] ?? '')}`)).toEqual([
      'pitwall-writer /not-a-health-endpoint',
    ]);
  });
});
