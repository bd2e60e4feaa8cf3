import type { Logger } from '@pitwall/platform';
import calculateSlot from 'cluster-key-slot';
import { Cluster } from 'ioredis';
import { isClusterTarget, refreshOnTopologyError, type RedisTarget } from './client.js';
import type { StreamClient } from './groups.js';
import { RespConnection } from './resp-connection.js';

/**
 * What a connection of a shard serves: its blocking reads (`read`), the writer's acknowledgements,
 * claims and re-reads (`ack`), the live gateway's blocking reads of the shard's live-only stream
 * (`live`, a key with the same hash tag: the same node).
 */
export type ShardRole = 'read' | 'ack' | 'live';

export interface ShardConnectionsOptions {
  target: RedisTarget;
  /** The service's ioredis client: in cluster mode its slot map says which node serves a shard (standalone: unused). */
  topology?: StreamClient;
  /** CLIENT SETNAME prefix, e.g. `writer:<INSTANCE_ID>`. */
  name: string;
  logger: Logger;
  replyTimeoutMs: number;
}

interface Routed {
  node: string;
  connection: RespConnection;
}

/**
 * A service's own RESP connections (in-place reply parsing, see resp.ts), one per shard and role: the
 * writer's blocking reads (nothing queues behind a BLOCK) and its acknowledgements, claims and
 * re-reads; the live gateway's blocking reads of each shard and of its live-only stream.
 *
 * Standalone: every connection goes to REDIS_URL. Redis Cluster: to the master that serves the
 * shard's slot, as the cluster client (ioredis `Cluster`, which keeps the slot map) knows it. When a
 * command fails with MOVED, ASK, CLUSTERDOWN, TRYAGAIN, READONLY or no connection (a failover, a
 * resharding), `failed()` asks the cluster client to refresh its slot map; the caller retries with its
 * backoff and the shard's connections then go to the node that serves it now. No topology is
 * computed here: it is ioredis's.
 */
export class ShardConnections {
  private readonly routes = new Map<string, Routed>();
  private readonly cluster: Cluster | undefined;
  private closed = false;

  constructor(private readonly options: ShardConnectionsOptions) {
    this.cluster = isClusterTarget(options.target) && options.topology instanceof Cluster ? options.topology : undefined;
  }

  /** The connection of `key` for `role`, to the node that serves the key now. */
  connection(key: string, role: ShardRole): RespConnection {
    const id = `${role}:${key}`;
    const node = this.nodeOf(key);
    const routed = this.routes.get(id);
    if (routed !== undefined && routed.node === node) return routed.connection;
    // The slot moved (or first use): a connection to where it is now; the old one is let go.
    if (routed !== undefined) void routed.connection.close();
    const shard = /\{(\d+)\}$/.exec(key)?.[1] ?? key;
    const connection = new RespConnection({
      url: this.urlOf(node),
      name: `${this.options.name}:${role}${shard}`,
      logger: this.options.logger,
      replyTimeoutMs: this.options.replyTimeoutMs,
    });
    if (this.closed) void connection.close();
    this.routes.set(id, { node, connection });
    return connection;
  }

  /**
   * A command on a shard's connection failed: when the cause may be a topology change, the cluster
   * client refreshes its slot map (once at a time; ioredis coalesces concurrent refreshes).
   */
  failed(err: unknown): void {
    if (this.cluster !== undefined) refreshOnTopologyError(this.cluster, err);
  }

  /** Readiness of the read connections: undefined when all are connected. */
  readinessProblem(): string | undefined {
    for (const [id, { connection }] of this.routes) {
      if (!id.startsWith('read:')) continue;
      const problem = connection.readinessProblem();
      if (problem !== undefined) return problem;
    }
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.routes.values()].map(({ connection }) => connection.close()));
  }

  /** `host:port` of the master serving the key ('' in standalone mode). */
  private nodeOf(key: string): string {
    if (this.cluster === undefined) return '';
    const master = this.cluster.slots[calculateSlot(key)]?.[0];
    if (master !== undefined) return master;
    // No slot map yet (not connected): the first seed; a MOVED corrects it.
    const seed = this.options.target.REDIS_CLUSTER_NODES.nodes[0];
    return seed === undefined ? '' : `${seed.host}:${seed.port}`;
  }

  private urlOf(node: string): string {
    const { target } = this.options;
    if (node === '') return target.REDIS_URL;
    const colon = node.lastIndexOf(':');
    const host = node.slice(0, colon);
    const url = new URL(`${target.REDIS_CLUSTER_NODES.tls ? 'rediss' : 'redis'}://placeholder`);
    url.hostname = host.includes(':') ? `[${host}]` : host;
    url.port = node.slice(colon + 1);
    if (target.REDIS_USERNAME !== undefined) url.username = encodeURIComponent(target.REDIS_USERNAME);
    if (target.REDIS_PASSWORD !== undefined) url.password = encodeURIComponent(target.REDIS_PASSWORD);
    return url.toString();
  }
}
