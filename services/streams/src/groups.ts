import type { Cluster, Redis } from 'ioredis';
import { redisErrorKind } from './errors.js';
import {
  parseConsumers,
  parseGroups,
  parseStreamInfo,
  shardBacklog,
  type ConsumerInfo,
  type GroupInfo,
  type ShardBacklog,
  type StreamInfo,
} from './xinfo.js';

/** A standalone client or a cluster client: every function here works with either. */
export type StreamClient = Redis | Cluster;

export interface CreateGroupOptions {
  /** Where the group starts: '0' (everything in the stream) or '$' (only what arrives from now on). */
  start: '0' | '$';
  /** Creates the stream too when it does not exist (default true). */
  mkstream?: boolean;
}

/** XGROUP CREATE; an existing group (BUSYGROUP) is fine. Returns whether it was created now. */
export async function createGroup(
  client: StreamClient,
  key: string,
  group: string,
  options: CreateGroupOptions,
): Promise<'created' | 'exists'> {
  const args: (string | number)[] = ['CREATE', key, group, options.start];
  if (options.mkstream !== false) args.push('MKSTREAM');
  try {
    await client.call('XGROUP', args);
    return 'created';
  } catch (err) {
    if (redisErrorKind(err) === 'busygroup') return 'exists';
    throw err;
  }
}

/** XINFO GROUPS of a shard; undefined when the stream does not exist. */
export async function groupsOf(client: StreamClient, key: string): Promise<GroupInfo[] | undefined> {
  try {
    return parseGroups(await client.call('XINFO', ['GROUPS', key]));
  } catch (err) {
    if (redisErrorKind(err) === 'no-such-key') return undefined;
    throw err;
  }
}

/** XINFO STREAM of a shard; undefined when the stream does not exist. */
export async function streamInfoOf(client: StreamClient, key: string): Promise<StreamInfo | undefined> {
  try {
    return parseStreamInfo(await client.call('XINFO', ['STREAM', key]));
  } catch (err) {
    if (redisErrorKind(err) === 'no-such-key') return undefined;
    throw err;
  }
}

/** XINFO CONSUMERS of a group on a shard; empty when the stream or the group does not exist. */
export async function consumersOf(client: StreamClient, key: string, group: string): Promise<ConsumerInfo[]> {
  try {
    return parseConsumers(await client.call('XINFO', ['CONSUMERS', key, group]));
  } catch (err) {
    const kind = redisErrorKind(err);
    if (kind === 'no-such-key' || kind === 'nogroup') return [];
    throw err;
  }
}

/** A group on one shard: its info (undefined when missing) and its backlog. */
export interface ShardGroupState {
  key: string;
  group: GroupInfo | undefined;
  backlog: ShardBacklog;
}

/**
 * The state of `group` on one shard: XINFO GROUPS and XINFO STREAM in one round trip (both name the
 * same key, so in a cluster they go to the node that owns its slot together).
 */
export async function shardGroupState(client: StreamClient, key: string, group: string): Promise<ShardGroupState> {
  const results = (await client.pipeline().call('XINFO', 'GROUPS', key).call('XINFO', 'STREAM', key).exec()) ?? [];
  const [groupsResult, streamResult] = results;
  if (groupsResult === undefined || streamResult === undefined) throw new Error('redis pipeline was discarded');
  const failure = groupsResult[0] ?? streamResult[0];
  if (failure) {
    if (redisErrorKind(failure) === 'no-such-key') return { key, group: undefined, backlog: shardBacklog(undefined, undefined, group) };
    throw failure;
  }
  const groups = parseGroups(groupsResult[1]);
  return { key, group: groups.find((g) => g.name === group), backlog: shardBacklog(groups, parseStreamInfo(streamResult[1]), group) };
}

/**
 * shardGroupState of every shard, one round trip per shard, concurrently. A shard whose query failed
 * is an Error in its place (the others still count).
 */
export async function groupStates(client: StreamClient, keys: readonly string[], group: string): Promise<(ShardGroupState | Error)[]> {
  return Promise.all(
    keys.map((key) => shardGroupState(client, key, group).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))))),
  );
}
