import { randomInt } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import {
  createEventViewer,
  DirectusRest,
  login,
  sharedDirectusAdmin,
  sharedDirectusSecret,
  sharedDirectusSeed,
  sharedDirectusUrl,
} from '@pitwall/business-plane';
import { PROCESSOR_GROUP, shardKey, shardOf } from '@pitwall/contract';
import { shardGroupState } from '@pitwall/streams';
import { CODEC_8_EXTENDED, encodeImeiHandshake, encodeTcpAvlPacket } from '@pitwall/teltonika';
import {
  createTestDatabase,
  freePort,
  RedisCluster,
  sleep,
  startService,
  uniqueName,
  waitFor,
  type ServiceProcess,
} from '@pitwall/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';

/**
 * The whole pipeline on a real Redis Cluster (3 masters, 3 replicas, redis-server in cluster mode):
 * devices -> ingestion -> cluster -> writer -> PostgreSQL, and -> live gateway -> viewer, with
 * STREAM_SHARDS=4, INGESTION_MIN_REPLICAS=1 and a writer pipeline per shard. Then the master of shard
 * {0} is SIGKILLed while a resending fleet drives, a shard's only replica is killed, and a shard's
 * master and replica are both killed. The nodes keep an fsynced append-only file (a node that comes
 * back has what it acknowledged) and run with cluster-require-full-coverage no. Then one shard's slot
 * is moved to another master (resharding) while the fleet drives, with no service restarted.
 * The gateway asks the run's shared Directus, where this test makes its own event (running now), its
 * devices and their entries, and a viewer of that event.
 */

const SHARDS = 4;
const STREAM_KEY = uniqueName('cluster');

/** Two devices per shard (IMEIs picked by the contract's shard function). */
function devicesPerShard(): string[][] {
  const byShard: string[][] = Array.from({ length: SHARDS }, () => []);
  // IMEIs of this run only (devices are unique in the shared Directus).
  const base = 356_000_000_000_000 + randomInt(0, 999_999) * 1_000_000;
  for (let n = 0; byShard.some((list) => list.length < 2); n++) {
    const imei = String(base + n);
    const list = byShard[shardOf(imei, SHARDS)] as string[];
    if (list.length < 2) list.push(imei);
  }
  return byShard;
}
const SHARD_DEVICES = devicesPerShard();
const ALL_DEVICES = SHARD_DEVICES.flat();

/** An event whose window includes now, with every device of the test entered, on the shared Directus. */
async function makeEvent(rest: DirectusRest): Promise<number> {
  const now = Date.now();
  const event = await rest.post<{ id: number }>('/items/events', {
    name: uniqueName('cluster'),
    status: 'live',
    starts_at: new Date(now - 3_600_000).toISOString(),
    ends_at: new Date(now + 3_600_000).toISOString(),
  });
  for (const [i, imei] of ALL_DEVICES.entries()) {
    const device = await rest.post<{ id: number }>('/items/devices', { imei, name: `Cluster tracker ${i}` });
    await rest.post('/items/entries', { event: event.id, device: device.id, label: String(i) });
  }
  return event.id;
}

/** What happened to one packet: acknowledged, or the connection closed without an acknowledgement. */
type Outcome = 'acked' | 'closed';

/** A Teltonika device over TCP: one packet of one record at a time. */
class Device {
  private socket: Socket | undefined;
  private received = Buffer.alloc(0);
  private onData: (() => void) | undefined;
  /** Timestamps of positions acknowledged by ingestion. */
  readonly acked: number[] = [];

  constructor(
    readonly imei: string,
    private readonly port: number,
  ) {}

  private async connect(): Promise<Socket> {
    if (this.socket !== undefined && !this.socket.destroyed) return this.socket;
    const socket = connect({ host: '127.0.0.1', port: this.port });
    this.socket = socket;
    this.received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.onData?.();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => this.onData?.());
    socket.write(encodeImeiHandshake(this.imei));
    if ((await this.expect(socket, 1)) !== 'acked' || this.received[0] !== 1) throw new Error(`handshake of ${this.imei} refused`);
    this.received = this.received.subarray(1);
    return socket;
  }

  /** Resolves when `bytes` arrived ('acked') or the connection closed first ('closed'). */
  private expect(socket: Socket, bytes: number): Promise<Outcome> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.received.length >= bytes) resolve('acked');
        else if (socket.destroyed) resolve('closed');
        else return;
        this.onData = undefined;
      };
      this.onData = check;
      check();
    });
  }

  /** Sends one position taken at `ts`; what came of it. */
  async send(ts: number): Promise<Outcome> {
    let socket: Socket;
    try {
      socket = await this.connect();
    } catch {
      return 'closed';
    }
    socket.write(
      encodeTcpAvlPacket(CODEC_8_EXTENDED, [
        {
          timestampMs: ts,
          priority: 0,
          latE7: 436_000_000,
          lonE7: 39_000_000,
          altitudeM: 100,
          headingDeg: 45,
          satellites: 10,
          speedKmh: 120,
          eventIoId: 0,
          generationType: undefined,
          io: [],
        },
      ]),
    );
    const outcome = await this.expect(socket, 4);
    if (outcome === 'acked') {
      expect(this.received.readUInt32BE(0)).toBe(1);
      this.received = this.received.subarray(4);
      this.acked.push(ts);
    }
    return outcome;
  }

  /** Sends `ts` until it is acknowledged (a device resends what was not acknowledged). */
  async sendUntilAcked(ts: number, stop: () => boolean = () => false): Promise<void> {
    while (!stop()) {
      if ((await this.send(ts)) === 'acked') return;
      await sleep(100);
    }
  }

  close(): void {
    this.socket?.destroy();
  }
}

let cluster: RedisCluster;
let eventId: number;
let databaseUrl: string;
const services: ServiceProcess[] = [];
let devices: Device[];
const seen = new Map<string, Set<number>>();
let viewer: WebSocket;
/** Distinct timestamps per device: every packet of the run is a new position, all in the past (ingestion dead-letters positions dated more than INGESTION_MAX_FUTURE_MS ahead). */
let clock = Date.now() - 3_600_000;

async function storedPositions(): Promise<{ total: number; distinct: number; keys: Set<string> }> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const rows = (
      await db.query<{ device_id: string; ms: string }>(
        'SELECT device_id, (extract(epoch FROM recorded_at) * 1000)::bigint AS ms FROM positions',
      )
    ).rows;
    const keys = new Set(rows.map((r) => `${r.device_id}/${r.ms}`));
    return { total: rows.length, distinct: keys.size, keys };
  } finally {
    await db.end();
  }
}

function acknowledgedKeys(): string[] {
  return devices.flatMap((d) => d.acked.map((ts) => `${d.imei}/${ts}`));
}

interface ShardPair {
  shard: number;
  /** A shard served by another master, and that master's port. */
  other: number;
  otherPort: number;
}

/** The first shard and another shard whose masters differ (undefined: every shard on one master). */
async function shardsOnTwoMasters(): Promise<ShardPair | undefined> {
  const ports: number[] = [];
  for (let shard = 0; shard < SHARDS; shard++) ports.push((await cluster.masterOf(shardKey(STREAM_KEY, shard))).port);
  for (let shard = 0; shard < SHARDS; shard++) {
    const other = ports.findIndex((port) => port !== ports[shard]);
    if (other >= 0) return { shard, other, otherPort: ports[other] as number };
  }
  return undefined;
}

/** Every device resending until acknowledged, a new position every 50 ms, until stopped. */
function driveFleet(): { stop: () => Promise<void> } {
  let stopped = false;
  const drive = async (device: Device) => {
    while (!stopped) {
      await device.sendUntilAcked((clock += 100), () => stopped);
      await sleep(50);
    }
  };
  const fleet = Promise.all(devices.map((device) => drive(device)));
  return {
    stop: async () => {
      stopped = true;
      await fleet;
    },
  };
}

/**
 * Waits until every acknowledged position is in PostgreSQL; on a timeout says which are missing, what
 * each shard's processor group holds (a missing position not in its stream was never admitted there)
 * and the services' last log lines.
 */
async function waitEveryAcknowledgedStored(what: string): Promise<void> {
  await waitFor(
    what,
    async () => {
      const stored = await storedPositions();
      return acknowledgedKeys().every((key) => stored.keys.has(key));
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  ).catch(async (err: unknown) => {
    const stored = await storedPositions();
    const missing = acknowledgedKeys().filter((key) => !stored.keys.has(key));
    const client = cluster.client();
    const states: string[] = [];
    for (let shard = 0; shard < SHARDS; shard++) {
      const state = await shardGroupState(client, shardKey(STREAM_KEY, shard), PROCESSOR_GROUP).catch((e: unknown) => String(e));
      states.push(`${shard}: ${JSON.stringify(state)}`);
    }
    client.disconnect();
    const logs = services.map((service) => service.proc.lines.slice(-10).join('\n')).join('\n---\n');
    throw new Error(`${String(err)}: ${missing.length} missing, e.g. ${missing.slice(0, 5).join(', ')}\n${states.join('\n')}\n${logs}`);
  });
}

beforeAll(async () => {
  cluster = await RedisCluster.start({ durable: true });
  const admin = sharedDirectusAdmin();
  eventId = await makeEvent(new DirectusRest(admin.url, admin.adminToken));
  const { user } = await createEventViewer(admin, [eventId]);
  databaseUrl = await createTestDatabase('cluster');
  const common = { REDIS_CLUSTER_NODES: cluster.seeds, STREAM_KEY, STREAM_SHARDS: String(SHARDS) };
  const [tcpPort, udpPort, gatewayPort] = await Promise.all([freePort(), freePort(), freePort()]);
  services.push(
    ...(await Promise.all([
      startService(
        'ingestion',
        {
          ...common,
          INGESTION_TCP_PORT: String(tcpPort),
          INGESTION_UDP_PORT: String(udpPort),
          INGESTION_MIN_REPLICAS: '1',
          INGESTION_REPLICA_TIMEOUT_MS: '500',
          INGESTION_REDIS_TIMEOUT_MS: '3000',
        },
        { timeoutMs: 60_000 },
      ),
      startService(
        'writer',
        {
          ...common,
          DATABASE_URL: databaseUrl,
          INSTANCE_ID: 'cluster-writer',
          WRITER_PIPELINES: String(SHARDS),
          WRITER_BATCH_WAIT_MS: '0',
          WRITER_RETRY_MAX_MS: '500',
        },
        { timeoutMs: 60_000 },
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
        { timeoutMs: 60_000 },
      ),
    ])),
  );
  devices = ALL_DEVICES.map((imei) => new Device(imei, tcpPort));

  // A viewer of the event (its token carries the pitwall_events claim).
  const { accessToken: token } = await login(sharedDirectusUrl(), user.email, user.password);
  viewer = new WebSocket(`ws://127.0.0.1:${gatewayPort}/live?access_token=${encodeURIComponent(token)}`);
  let subscribed = false;
  viewer.on('message', (data: Buffer) => {
    const message = JSON.parse(data.toString('utf8')) as { type: string; positions?: { device_id: string; ts: number }[] };
    if (message.type === 'subscribed') subscribed = true;
    for (const position of message.positions ?? []) {
      let set = seen.get(position.device_id);
      if (set === undefined) seen.set(position.device_id, (set = new Set()));
      set.add(position.ts);
    }
  });
  await new Promise((resolve, reject) => {
    viewer.once('open', resolve);
    viewer.once('error', reject);
  });
  viewer.send(JSON.stringify({ type: 'subscribe', event_id: eventId, uid: 's' }));
  await waitFor('subscribed', () => subscribed);
}, 180_000);

afterAll(async () => {
  viewer?.close();
  for (const device of devices ?? []) device.close();
  for (const service of services) await service.proc.stop();
  await cluster?.destroy();
});

describe('the pipeline on a real Redis Cluster (3 masters + 3 replicas, STREAM_SHARDS=4, INGESTION_MIN_REPLICAS=1)', () => {
  it('carries every shard from the devices to PostgreSQL and to the viewer; the shards live on several masters', async () => {
    const masters = new Set<number>();
    for (let shard = 0; shard < SHARDS; shard++) masters.add((await cluster.masterOf(shardKey(STREAM_KEY, shard))).port);
    expect(masters.size).toBeGreaterThan(1);

    const sent = devices.map(() => (clock += 100));
    await Promise.all(devices.map((device, i) => device.sendUntilAcked(sent[i] as number)));
    await waitFor(
      'every position in PostgreSQL',
      async () => {
        const stored = await storedPositions();
        return acknowledgedKeys().every((key) => stored.keys.has(key));
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    await waitFor('every position at the viewer', () => devices.every((d, i) => seen.get(d.imei)?.has(sent[i] as number) === true), {
      timeoutMs: 30_000,
    });
  });

  it('loses no acknowledged position when the master of shard {0} is SIGKILLed while a resending fleet drives', async () => {
    const fleet = driveFleet();
    const shard0 = SHARD_DEVICES[0] as string[];
    const ackedOf = (imei: string) => devices.find((d) => d.imei === imei)?.acked.length ?? 0;
    await waitFor('the fleet to drive', () => ackedOf(shard0[0] as string) >= 5, { timeoutMs: 30_000 });

    const killed = await cluster.killMasterOf(shardKey(STREAM_KEY, 0));
    const ackedAtKill = ackedOf(shard0[0] as string);
    const newestAtKill = Math.max(...(devices.find((d) => d.imei === shard0[0])?.acked ?? [0]));
    // The promoted replica has no replica of its own until the killed node is back (it rejoins as
    // its replica, as a restarted pod would): with INGESTION_MIN_REPLICAS=1 shard {0} is not
    // acknowledged meanwhile, the other shards are.
    await killed.server.restart();
    await cluster.waitHealthy();
    // Shard {0}'s devices are acknowledged again (by the promoted replica) and the viewer sees them.
    await waitFor('shard {0} acknowledged again after the failover', () => ackedOf(shard0[0] as string) >= ackedAtKill + 5, {
      timeoutMs: 60_000,
    });
    await waitFor(
      'the viewer to receive shard {0} again',
      () => [...(seen.get(shard0[0] as string) ?? [])].some((ts) => ts > newestAtKill),
      { timeoutMs: 30_000 },
    );
    await fleet.stop();
    await waitEveryAcknowledgedStored('every acknowledged position in PostgreSQL');
    const stored = await storedPositions();
    expect(stored.total).toBe(stored.distinct);
    expect(acknowledgedKeys().filter((key) => !stored.keys.has(key))).toEqual([]);
  });

  it('does not acknowledge a shard whose master has no replica left, while the other shards go on; it resumes when the replica is back', async () => {
    // A shard on a master other than shard {0}'s (whose node was restarted above).
    let target = 1;
    const masterOf0 = await cluster.masterOf(shardKey(STREAM_KEY, 0));
    for (let shard = 1; shard < SHARDS; shard++) {
      if ((await cluster.masterOf(shardKey(STREAM_KEY, shard))).port !== masterOf0.port) target = shard;
    }
    const master = await cluster.masterOf(shardKey(STREAM_KEY, target));
    const replicas = await cluster.replicasOf(master);
    expect(replicas.length).toBeGreaterThan(0);
    for (const replica of replicas) await replica.server.kill();

    const lonely = devices.find((d) => d.imei === (SHARD_DEVICES[target] as string[])[0]) as Device;
    const otherShard = [0, 1, 2, 3].find((shard) => shard !== target) as number;
    const other = devices.find((d) => d.imei === (SHARD_DEVICES[otherShard] as string[])[0]) as Device;
    const refused = (clock += 100);
    expect(await lonely.send(refused)).toBe('closed');
    if ((await cluster.masterOf(shardKey(STREAM_KEY, otherShard))).port !== master.port) {
      expect(await other.send((clock += 100))).toBe('acked');
    }

    for (const replica of replicas) await replica.server.restart();
    await cluster.waitHealthy();
    await lonely.sendUntilAcked(refused);
    await waitFor('the resent position in PostgreSQL', async () => (await storedPositions()).keys.has(`${lonely.imei}/${refused}`), {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
  });

  it('stops only the shard whose master and replica are both down, and resumes it with nothing lost when they return', async () => {
    // Shard X and a shard Y on another master.
    const pair = await shardsOnTwoMasters();
    expect(pair).toBeDefined();
    const { shard: x, other: y } = pair as ShardPair;
    const deviceOf = (shard: number) => devices.find((d) => d.imei === (SHARD_DEVICES[shard] as string[])[1]) as Device;
    const [down, up] = [deviceOf(x), deviceOf(y)];
    const ackedBefore = (await down.send((clock += 100))) === 'acked';
    expect(ackedBefore).toBe(true);

    const master = await cluster.masterOf(shardKey(STREAM_KEY, x));
    const replicas = await cluster.replicasOf(master);
    // Replicas first, so that no failover can take place.
    for (const replica of replicas) await replica.server.kill();
    await master.server.kill();

    const refused = (clock += 100);
    expect(await down.send(refused)).toBe('closed');
    const moving = (clock += 100);
    await up.sendUntilAcked(moving);
    await waitFor('shard Y in PostgreSQL while shard X is down', async () => (await storedPositions()).keys.has(`${up.imei}/${moving}`), {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    await waitFor('shard Y at the viewer while shard X is down', () => seen.get(up.imei)?.has(moving) === true, { timeoutMs: 30_000 });

    await master.server.restart();
    for (const replica of replicas) await replica.server.restart();
    await cluster.waitHealthy();
    await down.sendUntilAcked(refused);
    await waitEveryAcknowledgedStored('every acknowledged position in PostgreSQL after the nodes returned');
    await waitFor('shard X at the viewer again', () => seen.get(down.imei)?.has(refused) === true, { timeoutMs: 30_000 });
  });

  it('keeps carrying a shard whose slot is moved to another master while the fleet drives, with no service restarted', async () => {
    // A shard and a master other than the one serving it (the shards live on several masters).
    const pair = await shardsOnTwoMasters();
    expect(pair).toBeDefined();
    const { shard: moved, otherPort: target } = pair as ShardPair;
    const pids = services.map((service) => service.proc.pid);

    const fleet = driveFleet();
    const movedDevices = (SHARD_DEVICES[moved] as string[]).map((imei) => devices.find((d) => d.imei === imei) as Device);
    await waitFor('the fleet to drive', () => movedDevices.every((d) => d.acked.length >= 5), { timeoutMs: 30_000 });

    // With clients that do not update their slot map on MOVED (ioredis's MOVED handling patched out
    // of single commands and pipelines, and refreshOnTopologyError a no-op) this test fails: the moved
    // shard is never acknowledged again. With only refreshOnTopologyError a no-op it passes: ioredis's
    // own MOVED handling covers a planned move (the helper is for failovers' partly redirected pipelines).
    const key = shardKey(STREAM_KEY, moved);
    const { from, migrated } = await cluster.moveSlotOf(key, target);
    expect((await cluster.masterOf(key)).port).toBe(target);
    expect(from.port).not.toBe(target);
    // At least the shard stream itself moved (its live-only stream shares the hash tag, so the slot).
    expect(migrated).toBeGreaterThanOrEqual(1);
    const ackedAtMove = movedDevices.map((d) => d.acked.length);
    const newestAtMove = movedDevices.map((d) => Math.max(...d.acked));

    await waitFor(
      `shard {${moved}} acknowledged again after its slot moved`,
      () => movedDevices.every((d, i) => d.acked.length >= (ackedAtMove[i] as number) + 5),
      { timeoutMs: 60_000 },
    );
    await waitFor(
      `the viewer to receive shard {${moved}} after the move`,
      () => movedDevices.every((d, i) => [...(seen.get(d.imei) ?? [])].some((ts) => ts > (newestAtMove[i] as number))),
      { timeoutMs: 30_000 },
    );
    await fleet.stop();
    await waitEveryAcknowledgedStored('every acknowledged position in PostgreSQL');
    const stored = await storedPositions();
    expect(stored.total).toBe(stored.distinct);
    expect(acknowledgedKeys().filter((k) => !stored.keys.has(k))).toEqual([]);
    // The same processes throughout: none exited or was restarted.
    expect(services.map((service) => service.proc.running)).toEqual([true, true, true]);
    expect(services.map((service) => service.proc.pid)).toEqual(pids);
  });
});
