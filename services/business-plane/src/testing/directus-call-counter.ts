import { createServer, request, Agent, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

// A counting reverse proxy in front of Directus: a service is pointed at it (DIRECTUS_URL), so every
// call it makes is counted at the wire, whatever its own metrics say, and so is how many it had in
// flight at once.

/** Calls by what they are for. */
export interface DirectusCalls {
  /** GET /items/events/:id: may this user see this event. */
  authorize: number;
  /** GET /users/me: token verification (when the gateway has no DIRECTUS_SECRET). */
  verify: number;
  /** Reads of entries (and their devices) of an event. */
  entries: number;
  other: number;
  total: number;
}

function classify(path: string): keyof Omit<DirectusCalls, 'total'> {
  if (/^\/items\/events\/[^/?]+/.test(path)) return 'authorize';
  if (path.startsWith('/users/me')) return 'verify';
  if (path.startsWith('/items/entries') || path.startsWith('/items/devices')) return 'entries';
  return 'other';
}

/** Calls being answered now, and the most at once. */
interface Concurrency {
  now: number;
  peak: number;
}

export class DirectusCallCounter {
  private constructor(
    private readonly calls: DirectusCalls,
    private readonly concurrency: Concurrency,
    private readonly server: Server,
    private readonly agent: Agent,
    readonly url: string,
  ) {}

  /** Listens on a free port of 127.0.0.1 and forwards everything to `directusUrl`. */
  static async start(directusUrl: string): Promise<DirectusCallCounter> {
    const upstream = new URL(directusUrl);
    const agent = new Agent({ keepAlive: true, maxSockets: 256 });
    const calls: DirectusCalls = { authorize: 0, verify: 0, entries: 0, other: 0, total: 0 };
    const concurrency: Concurrency = { now: 0, peak: 0 };
    const server = createServer((req, res) => {
      calls[classify(req.url ?? '/')]++;
      calls.total++;
      concurrency.now++;
      concurrency.peak = Math.max(concurrency.peak, concurrency.now);
      res.once('close', () => concurrency.now--);
      const forward = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: upstream.host },
          agent,
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      forward.on('error', () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      req.pipe(forward);
    });
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return new DirectusCallCounter(calls, concurrency, server, agent, `http://127.0.0.1:${port}`);
  }

  /** Most calls in flight at once since the start (or the last resetPeak). */
  get maxInFlight(): number {
    return this.concurrency.peak;
  }

  resetPeak(): void {
    this.concurrency.peak = this.concurrency.now;
  }

  /** The counts so far (a copy: subtract two snapshots for a window). */
  snapshot(): DirectusCalls {
    return { ...this.calls };
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.agent.destroy();
  }
}

export function callsBetween(before: DirectusCalls, after: DirectusCalls): DirectusCalls {
  return {
    authorize: after.authorize - before.authorize,
    verify: after.verify - before.verify,
    entries: after.entries - before.entries,
    other: after.other - before.other,
    total: after.total - before.total,
  };
}
