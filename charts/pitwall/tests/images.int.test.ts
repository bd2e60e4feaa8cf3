import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { ensureImages, ensureImageTools, podman, podmanEnvironment, type ImageComponent, type ImageSet } from '@pitwall/images';
import { CODEC_8_EXTENDED, encodeImeiHandshake, encodeTcpAvlPacket } from '@pitwall/teltonika';
import { createTestDatabase, freePort, ManagedProcess, OtlpReceiver, sharedRedisUrl, uniqueName, waitFor } from '@pitwall/testkit';
import { SignJWT } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { componentName, renderEnvironment } from './support/chart.js';
import { podmanSecurityFlags } from './support/container-flags.js';
import { deployment } from './support/objects.js';

/**
 * The three images as `make images` builds them (podman, from the Dockerfiles as they are), each run
 * with the production chart's securityContext (read-only root, uid 10001, every capability dropped, no
 * privilege escalation, /tmp as the chart's emptyDir) against the run's throwaway Redis and
 * PostgreSQL, on the host's network.
 */

let images: ImageSet;
const securityFlags = new Map<ImageComponent, string[]>();
const started: Container[] = [];

// The uWebSockets.js npm build falls back to a JavaScript implementation, printing these, when its native binary does not load.
const UWS_FALLBACK = /Falling back to a NodeJS implementation|not compatible with your Node\.js build|Using µWS fallback/;
const UWS_NATIVE = /uws_linux_x64_\d+\.node/;

class Container {
  readonly name = `pitwall-smoke-${uniqueName('c').toLowerCase()}`;
  readonly proc: ManagedProcess;

  constructor(
    readonly component: ImageComponent,
    env: Record<string, string>,
  ) {
    const image = images.images.find((i) => i.component === component);
    if (image === undefined) throw new Error(`no image for ${component}`);
    const flags = securityFlags.get(component) ?? [];
    const envFlags = Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]);
    this.proc = new ManagedProcess(
      'podman',
      ['run', '--rm', '--name', this.name, '--network=host', ...flags, ...envFlags, image.reference],
      {
        name: `image ${component}`,
        env: podmanEnvironment(),
      },
    );
    started.push(this);
  }

  async ready(metricsPort: number): Promise<void> {
    await waitFor(
      `${this.component} container /readyz`,
      async () => {
        if (!this.proc.running) throw new Error(`${this.component} exited with ${String(this.proc.exitCode)}:\n${this.proc.output()}`);
        const res = await fetch(`http://127.0.0.1:${metricsPort}/readyz`).catch(() => undefined);
        return res?.status === 200;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
  }

  /** What `kubectl delete pod` does first: SIGTERM to PID 1. Resolves with podman run's exit code (the container's). */
  async terminate(): Promise<number | null> {
    const kill = await podman(['kill', '--signal', 'TERM', this.name]);
    if (kill.code !== 0) throw new Error(`podman kill: ${kill.stderr}`);
    return (await this.proc.exited).code;
  }

  /** The memory map of PID 1, read inside the running container. */
  async pid1Maps(): Promise<string> {
    const result = await podman(['exec', this.name, 'cat', '/proc/1/maps']);
    if (result.code !== 0) throw new Error(`podman exec: ${result.stderr}`);
    return result.stdout;
  }
}

beforeAll(async () => {
  ensureImageTools();
  // `make test` builds them first (`make images`); alone, this builds what is missing (minutes when cold).
  images = await ensureImages({ log: () => undefined });
  const objects = await renderEnvironment('prod');
  for (const component of ['ingestion', 'writer', 'live-gateway'] as const) {
    securityFlags.set(component, podmanSecurityFlags(deployment(objects, componentName(component))));
  }
}, 30 * 60_000);

afterAll(async () => {
  for (const container of started) if (container.proc.running) await podman(['rm', '--force', '--time', '0', container.name]);
});

describe('the security flags the containers run with', () => {
  it('are the chart’s: uid 10001, read-only root, every capability dropped, no privilege escalation, /tmp writable', () => {
    const flags = securityFlags.get('live-gateway') ?? [];
    expect(flags.join(' ')).toContain('--user 10001:10001');
    expect(flags).toContain('--read-only');
    expect(flags).toContain('--cap-drop=ALL');
    expect(flags).toContain('--security-opt=no-new-privileges');
    expect(flags.join(' ')).toMatch(/--tmpfs \/tmp:rw,mode=1777,size=64m/);
  });
});

describe('ingestion and writer images: a device’s position into PostgreSQL', () => {
  it('handshake and acknowledgement from ingestion, migrations and the row from the writer, traced, both exit 0 on SIGTERM', async () => {
    const streamKey = uniqueName('smoke');
    const databaseUrl = await createTestDatabase('smoke');
    const [tcpPort, udpPort, ingestionMetrics, writerMetrics] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    // Tracing on, as in staging and prod: the instrumentations load in the read-only image.
    const receiver = new OtlpReceiver();
    const otel = {
      OTEL_EXPORTER_OTLP_ENDPOINT: await receiver.start(),
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_TRACES_SAMPLER: 'parentbased_always_on',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    };
    const common = { REDIS_URL: sharedRedisUrl(), STREAM_KEY: streamKey, LOG_LEVEL: 'info', ...otel };
    const ingestion = new Container('ingestion', {
      ...common,
      INGESTION_TCP_PORT: String(tcpPort),
      INGESTION_UDP_PORT: String(udpPort),
      METRICS_PORT: String(ingestionMetrics),
    });
    const writer = new Container('writer', {
      ...common,
      DATABASE_URL: databaseUrl,
      METRICS_PORT: String(writerMetrics),
      INSTANCE_ID: 'smoke',
    });
    await Promise.all([ingestion.ready(ingestionMetrics), writer.ready(writerMetrics)]);

    const imei = '356307042441013';
    const socket = connect({ host: '127.0.0.1', port: tcpPort });
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    const bytes = () => Buffer.concat(received).toString('hex');
    socket.write(encodeImeiHandshake(imei));
    await waitFor('handshake accepted', () => bytes() === '01');
    const timestampMs = Date.now() - 1000;
    socket.write(
      encodeTcpAvlPacket(CODEC_8_EXTENDED, [
        {
          timestampMs,
          priority: 0,
          latE7: 436_000_000,
          lonE7: 39_000_000,
          altitudeM: 120,
          headingDeg: 90,
          satellites: 9,
          speedKmh: 180,
          eventIoId: 0,
          generationType: undefined,
          io: [],
        },
      ]),
    );
    await waitFor('one record acknowledged', () => bytes() === '0100000001');
    socket.destroy();

    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      const row = await waitFor(
        'the position in PostgreSQL',
        async () => {
          const result = await db.query<{ device_id: string; recorded_at: Date; speed_kmh: number }>(
            'SELECT device_id, recorded_at, speed_kmh FROM positions',
          );
          return result.rows[0];
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      expect(row).toMatchObject({ device_id: imei, speed_kmh: 180 });
      expect(row.recorded_at.getTime()).toBe(timestampMs);
    } finally {
      await db.end();
    }

    const [ingestionExit, writerExit] = await Promise.all([ingestion.terminate(), writer.terminate()]);
    expect(ingestionExit, ingestion.proc.output()).toBe(0);
    expect(writerExit, writer.proc.output()).toBe(0);
    await receiver.close();
    const packet = receiver.spans.find((s) => s.name === 'ingestion.packet');
    expect(packet?.service).toBe('pitwall-ingestion');
    const batch = receiver.spans.find((s) => s.name === 'writer.batch');
    expect(batch?.service).toBe('pitwall-writer');
    expect(batch?.parentSpanId).toBe(packet?.spanId);
    expect(receiver.spans.some((s) => s.scope.includes('instrumentation-pg'))).toBe(true);
    expect(receiver.spans.some((s) => s.scope.includes('ioredis'))).toBe(true);
  });
});

describe('live-gateway image', () => {
  const secret = `smoke-${randomUUID()}`;

  async function startGateway(extra: Record<string, string> = {}): Promise<{ container: Container; port: number }> {
    const [port, metrics] = await Promise.all([freePort(), freePort()]);
    const container = new Container('live-gateway', {
      REDIS_URL: sharedRedisUrl(),
      STREAM_KEY: uniqueName('smoke'),
      INSTANCE_ID: uniqueName('smoke-pod'),
      GATEWAY_PORT: String(port),
      METRICS_PORT: String(metrics),
      // Nothing listens there: tokens are verified locally with DIRECTUS_SECRET, and nothing here needs authorization.
      DIRECTUS_URL: `http://127.0.0.1:${await freePort()}`,
      DIRECTUS_SECRET: secret,
      DIRECTUS_SERVICE_TOKEN: 'smoke',
      ...extra,
    });
    await container.ready(metrics);
    return { container, port };
  }

  it('answers the upgrade with 101 on the native uWebSockets.js build, closes viewers with 1001 on SIGTERM and exits 0', async () => {
    const { container, port } = await startGateway();
    const token = await new SignJWT({ id: randomUUID(), role: null, app_access: false, admin_access: false })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuedAt()
      .setIssuer('directus')
      .setExpirationTime('15m')
      .sign(new TextEncoder().encode(secret));
    const socket = new WebSocket(`ws://127.0.0.1:${port}/live?access_token=${encodeURIComponent(token)}`);
    const upgrade = new Promise<number | undefined>((resolve, reject) => {
      socket.once('upgrade', (response) => resolve(response.statusCode));
      socket.once('unexpected-response', (_request, response) => reject(new Error(`upgrade refused: HTTP ${response.statusCode}`)));
      socket.once('error', reject);
    });
    const firstMessage = new Promise<string>((resolve) => socket.once('message', (data: Buffer) => resolve(data.toString('utf8'))));
    const closed = new Promise<number>((resolve) => socket.once('close', (code: number) => resolve(code)));
    expect(await upgrade).toBe(101);
    expect(JSON.parse(await firstMessage)).toMatchObject({ type: 'auth', status: 'ok' });

    expect(await container.pid1Maps()).toMatch(UWS_NATIVE);
    const exit = container.terminate();
    expect(await closed).toBe(1001);
    expect(await exit, container.proc.output()).toBe(0);
    expect(container.proc.output(5000)).not.toMatch(UWS_FALLBACK);
  });

  it('refuses to run on the JavaScript fallback (so the checks above can fail): exit 69, the fallback named', async () => {
    const container = new Container('live-gateway', {
      REDIS_URL: sharedRedisUrl(),
      STREAM_KEY: uniqueName('smoke'),
      GATEWAY_PORT: String(await freePort()),
      METRICS_PORT: String(await freePort()),
      DIRECTUS_URL: `http://127.0.0.1:${await freePort()}`,
      DIRECTUS_SECRET: secret,
      DIRECTUS_SERVICE_TOKEN: 'smoke',
      UWS_USE_FALLBACK: '1',
    });
    expect((await container.proc.exited).code).toBe(69);
    expect(container.proc.output(5000)).toMatch(UWS_FALLBACK);
    expect(container.proc.output(5000)).toMatch(/not its native build/);
  });
});
