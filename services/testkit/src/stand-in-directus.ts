import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One entry of an event as the live gateway reads it (`/items/entries?fields=label,device.imei,…`). */
export interface StandInEntry {
  label: string;
  imei: string;
}

export interface StandInDirectus {
  url: string;
  /** Requests answered so far. */
  calls(): number;
  close(): Promise<void>;
}

/**
 * The two Directus reads a live gateway makes once its tokens are verified locally (DIRECTUS_SECRET):
 * `GET /items/events/:id` (200 for every event: authorization always allowed) and
 * `GET /items/entries?filter[event][_eq]=<id>` (the entries `entriesOf` gives, no time window). For
 * tests and benchmarks about the gateway itself, where a real Directus would only add its cost. Counts
 * every request.
 */
export async function startStandInDirectus(entriesOf: (eventId: number) => readonly StandInEntry[]): Promise<StandInDirectus> {
  let calls = 0;
  const server: Server = createServer((req, res) => {
    calls++;
    const url = new URL(req.url ?? '/', 'http://localhost');
    res.setHeader('content-type', 'application/json');
    const event = /^\/items\/events\/(\d+)$/.exec(url.pathname);
    if (event !== null) {
      res.end(JSON.stringify({ data: { id: Number(event[1]) } }));
      return;
    }
    if (url.pathname === '/items/entries') {
      const eventId = Number(url.searchParams.get('filter[event][_eq]'));
      const data = entriesOf(eventId).map((entry) => ({
        label: entry.label,
        device: { imei: entry.imei },
        event: { starts_at: null, ends_at: null },
      }));
      res.end(JSON.stringify({ data }));
      return;
    }
    res.statusCode = 404;
    res.end('{"errors":[{"message":"not found"}]}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls: () => calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
