import { Histogram } from '../stats/histogram.js';

// How many event authorizations (`GET /items/events/:id` with a viewer's own token, the gateway's call)
// Directus serves per second at a given concurrency: the capacity a race start's subscriptions meet.

export interface AuthorizationCapacity {
  concurrency: number;
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Answers by HTTP status (anything but 200 means the probe did not measure what it should). */
  statuses: Record<string, number>;
}

export async function probeDirectusAuthorization(
  directusUrl: string,
  tokens: readonly string[],
  eventIds: readonly number[],
  { concurrency = 32, durationMs = 5_000 }: { concurrency?: number; durationMs?: number } = {},
): Promise<AuthorizationCapacity> {
  if (tokens.length === 0 || eventIds.length === 0) throw new Error('the probe needs tokens and event ids');
  const latency = new Histogram();
  const statuses: Record<string, number> = {};
  let next = 0;
  const started = performance.now();
  const until = started + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        const i = next++;
        const token = tokens[i % tokens.length] ?? '';
        const eventId = eventIds[i % eventIds.length] ?? 0;
        const t = performance.now();
        const res = await fetch(`${directusUrl}/items/events/${eventId}?fields=id`, { headers: { authorization: `Bearer ${token}` } });
        await res.text();
        latency.record(performance.now() - t);
        statuses[String(res.status)] = (statuses[String(res.status)] ?? 0) + 1;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { concurrency, callsPerSecond: latency.count / seconds, p50Ms: latency.quantile(0.5), p99Ms: latency.quantile(0.99), statuses };
}
