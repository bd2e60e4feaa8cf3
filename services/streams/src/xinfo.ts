/** One consumer group of a stream (XINFO GROUPS, Redis 7). */
export interface GroupInfo {
  name: string;
  consumers: number;
  /** Entries delivered to some consumer and not acknowledged yet. */
  pending: number;
  lastDeliveredId: string;
  /** Entries the group has read (undefined when Redis cannot tell). */
  entriesRead: number | undefined;
  /** Entries not delivered to the group yet (undefined when Redis cannot tell: nil lag). */
  lag: number | undefined;
}

/** One consumer of a group (XINFO CONSUMERS). */
export interface ConsumerInfo {
  name: string;
  pending: number;
  /** Since its last attempted interaction (read, claim, ack). */
  idleMs: number;
}

/** What a backlog is measured from (XINFO STREAM). */
export interface StreamInfo {
  length: number;
  /** Entries ever added (undefined before Redis 7). */
  entriesAdded: number | undefined;
  /** Id of the last entry ever added ('0-0' for a stream that never had one). */
  lastGeneratedId: string;
}

/** Entries a group has not acknowledged on a shard: lag (undelivered) + pending (delivered, unacked). */
export interface ShardBacklog {
  backlog: number;
  /** How the undelivered part was obtained: Redis's `lag`, entries-added - entries-read, the stream length (no group or lag unknown), or no stream at all. */
  source: 'lag' | 'entries-read' | 'length' | 'empty';
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString();
  if (typeof value === 'number') return String(value);
  return undefined;
}

function integer(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  const s = text(value);
  if (s === undefined || !/^-?\d+$/.test(s)) return undefined;
  return Number(s);
}

/** A flat [name, value, name, value, ...] reply (RESP2) or a map (RESP3) as a Map. */
export function fieldMap(reply: unknown): Map<string, unknown> {
  const map = new Map<string, unknown>();
  if (reply instanceof Map) {
    for (const [name, value] of reply as Map<unknown, unknown>) {
      const key = text(name);
      if (key !== undefined) map.set(key, value);
    }
    return map;
  }
  if (!Array.isArray(reply)) return map;
  for (let i = 0; i + 1 < reply.length; i += 2) {
    const key = text(reply[i]);
    if (key !== undefined) map.set(key, reply[i + 1]);
  }
  return map;
}

function records(reply: unknown): Map<string, unknown>[] {
  return Array.isArray(reply) ? reply.map(fieldMap) : [];
}

/** XINFO GROUPS <key>: every group of the stream. */
export function parseGroups(reply: unknown): GroupInfo[] {
  return records(reply).map((g) => ({
    name: text(g.get('name')) ?? '',
    consumers: integer(g.get('consumers')) ?? 0,
    pending: integer(g.get('pending')) ?? 0,
    lastDeliveredId: text(g.get('last-delivered-id')) ?? '0-0',
    entriesRead: integer(g.get('entries-read')),
    lag: integer(g.get('lag')),
  }));
}

/** XINFO CONSUMERS <key> <group>: every consumer of the group. */
export function parseConsumers(reply: unknown): ConsumerInfo[] {
  return records(reply).map((c) => ({
    name: text(c.get('name')) ?? '',
    pending: integer(c.get('pending')) ?? 0,
    idleMs: integer(c.get('idle')) ?? 0,
  }));
}

/** XINFO STREAM <key>: its length and entries ever added. */
export function parseStreamInfo(reply: unknown): StreamInfo {
  const info = fieldMap(reply);
  return {
    length: integer(info.get('length')) ?? 0,
    entriesAdded: integer(info.get('entries-added')),
    lastGeneratedId: text(info.get('last-generated-id')) ?? '0-0',
  };
}

/**
 * Backlog of `group` on a shard from its groups and stream info (undefined: the stream does not
 * exist, so nothing is waiting). A missing group means the whole stream is unread; a nil lag (Redis
 * cannot tell after deletions) falls back to entries-added - entries-read, then to the length.
 */
export function shardBacklog(groups: readonly GroupInfo[] | undefined, stream: StreamInfo | undefined, group: string): ShardBacklog {
  if (groups === undefined || stream === undefined) return { backlog: 0, source: 'empty' };
  const info = groups.find((g) => g.name === group);
  if (info === undefined) return { backlog: stream.length, source: 'length' };
  if (info.lag !== undefined) return { backlog: info.lag + info.pending, source: 'lag' };
  if (stream.entriesAdded !== undefined && info.entriesRead !== undefined) {
    return { backlog: Math.max(0, stream.entriesAdded - info.entriesRead) + info.pending, source: 'entries-read' };
  }
  return { backlog: stream.length, source: 'length' };
}
