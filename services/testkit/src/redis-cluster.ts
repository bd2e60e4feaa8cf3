import { Cluster, Redis } from 'ioredis';
import { freePortWithPartner } from './ports.js';
import { RedisServer } from './redis-server.js';
import { waitFor } from './wait.js';

const SLOTS = 16_384;

export interface RedisClusterOptions {
  /** Default 3. */
  masters?: number;
  /** Replicas of each master; default 1. */
  replicasPerMaster?: number;
  /** cluster-node-timeout: how long a node may be silent before a failover; default 2000 ms. */
  nodeTimeoutMs?: number;
  /** Append-only file with fsync on every write on every node (see RedisServer). Default false. */
  durable?: boolean;
  /**
   * cluster-require-full-coverage: true stops the whole cluster while any slot has no live owner (Redis's
   * default). Default false, as production should run it: a shard whose master and replicas are all
   * down stops alone, the others go on.
   */
  requireFullCoverage?: boolean;
}

/** A node of the cluster: its server (stop, kill, restart it) and its cluster node id. */
export interface RedisClusterNode {
  server: RedisServer;
  id: string;
  port: number;
}

/** One command on one node (a short-lived connection; the node may be down). */
async function onNode(port: number, ...args: (string | number)[]): Promise<unknown> {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1_000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await client.call(args[0] as string, ...args.slice(1));
  } finally {
    client.disconnect();
  }
}

function infoField(info: unknown, name: string): string | undefined {
  return new RegExp(`^${name}:(.*)$`, 'm').exec(String(info))?.[1]?.trim();
}

/**
 * A throwaway Redis Cluster on free loopback ports (each below 55536 with its bus port, port + 10000,
 * free too): `masters` masters sharing the 16384 slots evenly and `replicasPerMaster` replicas each,
 * built with CLUSTER MEET / ADDSLOTSRANGE / REPLICATE. A test may kill, stop and restart any node and
 * fail a master over; a restarted node keeps its nodes.conf and rejoins.
 */
export class RedisCluster {
  private constructor(
    readonly nodes: RedisClusterNode[],
    private readonly masterCount: number,
  ) {}

  static async start(options: RedisClusterOptions = {}): Promise<RedisCluster> {
    const masters = options.masters ?? 3;
    const replicas = options.replicasPerMaster ?? 1;
    const nodeTimeoutMs = options.nodeTimeoutMs ?? 2_000;
    const total = masters * (1 + replicas);
    const ports = new Set<number>();
    while (ports.size < total) {
      const port = await freePortWithPartner();
      if (!ports.has(port) && !ports.has(port + 10_000) && !ports.has(port - 10_000)) ports.add(port);
    }
    const servers = await Promise.all(
      [...ports].map((port) =>
        RedisServer.start({
          port,
          durable: options.durable ?? false,
          extraArgs: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            'nodes.conf',
            '--cluster-node-timeout',
            String(nodeTimeoutMs),
            // A failover must not wait for a replica's data to be "fresh enough" by Redis's measure.
            '--cluster-replica-validity-factor',
            '0',
            '--cluster-require-full-coverage',
            options.requireFullCoverage === true ? 'yes' : 'no',
          ],
        }),
      ),
    );
    const nodes: RedisClusterNode[] = [];
    for (const server of servers) nodes.push({ server, port: server.port, id: String(await onNode(server.port, 'CLUSTER', 'MYID')) });
    const cluster = new RedisCluster(nodes, masters);
    const first = nodes[0] as RedisClusterNode;
    for (const node of nodes.slice(1)) await onNode(first.port, 'CLUSTER', 'MEET', '127.0.0.1', node.port);
    for (let i = 0; i < masters; i++) {
      const from = Math.floor((i * SLOTS) / masters);
      const to = Math.floor(((i + 1) * SLOTS) / masters) - 1;
      await onNode((nodes[i] as RedisClusterNode).port, 'CLUSTER', 'ADDSLOTSRANGE', from, to);
    }
    await waitFor(
      'every cluster node to know every other',
      async () => {
        for (const node of nodes) {
          const known = String(await onNode(node.port, 'CLUSTER', 'NODES'))
            .trim()
            .split('\n').length;
          if (known < total) return false;
        }
        return true;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    for (let r = 0; r < masters * replicas; r++) {
      const replica = nodes[masters + r] as RedisClusterNode;
      const master = nodes[r % masters] as RedisClusterNode;
      await onNode(replica.port, 'CLUSTER', 'REPLICATE', master.id);
    }
    await cluster.waitHealthy();
    return cluster;
  }

  /** `host:port` of every node, comma-separated: REDIS_CLUSTER_NODES. */
  get seeds(): string {
    return this.nodes.map((node) => `127.0.0.1:${node.port}`).join(',');
  }

  /** A cluster client (ioredis Cluster); the caller quits it. */
  client(): Cluster {
    return new Cluster(
      this.nodes.map((node) => ({ host: '127.0.0.1', port: node.port })),
      { retryDelayOnFailover: 200, retryDelayOnClusterDown: 200, redisOptions: { maxRetriesPerRequest: 1 } },
    );
  }

  private running(): RedisClusterNode[] {
    return this.nodes.filter((node) => node.server.running);
  }

  /**
   * Waits until every running node reports cluster_state:ok with all slots served, every master has
   * its replicas attached and in sync, and all running nodes agree on who serves what.
   */
  async waitHealthy(timeoutMs = 60_000): Promise<void> {
    await waitFor(
      'the redis cluster to be healthy',
      async () => {
        const views = new Set<string>();
        for (const node of this.running()) {
          const info = await onNode(node.port, 'CLUSTER', 'INFO');
          if (infoField(info, 'cluster_state') !== 'ok' || infoField(info, 'cluster_slots_ok') !== String(SLOTS)) return false;
          const replication = await onNode(node.port, 'INFO', 'replication');
          if (infoField(replication, 'role') === 'slave' && infoField(replication, 'master_link_status') !== 'up') return false;
          views.add(JSON.stringify(await this.slotOwners(node.port)));
        }
        return views.size === 1;
      },
      { timeoutMs, intervalMs: 200 },
    );
  }

  /** The master port serving each slot range, as one node sees it. */
  private async slotOwners(port: number): Promise<[number, number, number][]> {
    const reply = (await onNode(port, 'CLUSTER', 'SLOTS')) as [number, number, [string, number, string]][];
    return reply.map(([from, to, master]) => [from, to, master[1]] as [number, number, number]).sort((a, b) => a[0] - b[0]);
  }

  /** The node that serves `key`'s slot as master now (asked of a running node). */
  async masterOf(key: string): Promise<RedisClusterNode> {
    const asked = this.running()[0];
    if (asked === undefined) throw new Error('no cluster node is running');
    const slot = Number(await onNode(asked.port, 'CLUSTER', 'KEYSLOT', key));
    const owner = (await this.slotOwners(asked.port)).find(([from, to]) => slot >= from && slot <= to);
    const node = this.nodes.find((n) => n.port === owner?.[2]);
    if (node === undefined) throw new Error(`no master serves slot ${slot}`);
    return node;
  }

  /** The nodes replicating `master` now (running ones). */
  async replicasOf(master: RedisClusterNode): Promise<RedisClusterNode[]> {
    const asked = this.running().find((n) => n !== master) ?? master;
    const lines = String(await onNode(asked.port, 'CLUSTER', 'NODES'))
      .trim()
      .split('\n');
    const ids = new Set(
      lines
        .map((line) => line.split(' '))
        .filter((f) => f[2]?.includes('slave') === true && f[3] === master.id)
        .map((f) => f[0]),
    );
    return this.nodes.filter((n) => ids.has(n.id) && n.server.running);
  }

  /**
   * SIGKILL of the master serving `key`, then waits until a replica took its slots over (the cluster
   * is ok again on the running nodes). Returns the killed node (restart it with node.server.restart()).
   */
  async killMasterOf(key: string): Promise<RedisClusterNode> {
    const master = await this.masterOf(key);
    await master.server.kill();
    await waitFor(
      `a replica to take over from the killed master on port ${master.port}`,
      async () => (await this.masterOf(key)).port !== master.port,
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    await this.waitHealthy();
    return master;
  }

  /** A manual failover (CLUSTER FAILOVER on a replica) of the master serving `key`; returns the new master. */
  async failover(key: string): Promise<RedisClusterNode> {
    const master = await this.masterOf(key);
    const replica = (await this.replicasOf(master))[0];
    if (replica === undefined) throw new Error(`the master on port ${master.port} has no running replica`);
    await onNode(replica.port, 'CLUSTER', 'FAILOVER');
    await waitFor(`the replica on port ${replica.port} to become master`, async () => (await this.masterOf(key)).port === replica.port, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    await this.waitHealthy();
    return replica;
  }

  /**
   * Resharding without a restart, the standard way: moves the slot of `key` (every key in it) from the
   * master serving it to the master on `toPort`. CLUSTER SETSLOT IMPORTING on the target, MIGRATING on
   * the source, MIGRATE of the slot's keys in batches (Redis 7.0: MIGRATE host port "" 0 timeout KEYS
   * ...) until the source holds none, then CLUSTER SETSLOT NODE on the target, the source and the other
   * masters. Clients meanwhile get ASK/TRYAGAIN and afterwards MOVED. Returns the slot, its old master and
   * how many keys were migrated.
   */
  async moveSlotOf(key: string, toPort: number): Promise<{ slot: number; from: RedisClusterNode; migrated: number }> {
    const from = await this.masterOf(key);
    const to = this.nodes.find((node) => node.port === toPort);
    if (to === undefined) throw new Error(`no cluster node on port ${toPort}`);
    if (to === from) throw new Error(`the slot of ${key} is already served by port ${toPort}`);
    const slot = Number(await onNode(from.port, 'CLUSTER', 'KEYSLOT', key));
    await onNode(to.port, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', from.id);
    await onNode(from.port, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', to.id);
    let migrated = 0;
    for (;;) {
      const keys = (await onNode(from.port, 'CLUSTER', 'GETKEYSINSLOT', slot, 100)) as string[];
      if (keys.length === 0) break;
      await onNode(from.port, 'MIGRATE', '127.0.0.1', to.port, '', 0, 10_000, 'KEYS', ...keys);
      migrated += keys.length;
    }
    await onNode(to.port, 'CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
    await onNode(from.port, 'CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
    for (const node of this.running()) {
      if (node === to || node === from) continue;
      const role = infoField(await onNode(node.port, 'INFO', 'replication'), 'role');
      if (role === 'master') await onNode(node.port, 'CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
    }
    await waitFor(`slot ${slot} to be served by port ${to.port}`, async () => (await this.masterOf(key)).port === to.port, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    await this.waitHealthy();
    return { slot, from, migrated };
  }

  /** Masters the cluster was created with. */
  get masters(): number {
    return this.masterCount;
  }

  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.server.destroy()));
  }
}
