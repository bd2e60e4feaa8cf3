import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { idempotent, type Service } from './lifecycle.js';

/** A readiness check: returns undefined when ready, or the reason it is not. */
export type ReadinessCheck = () => string | undefined;

/**
 * The one small HTTP server of a service, on METRICS_PORT: /metrics (Prometheus), /healthz (the
 * process is alive), /readyz (it should receive traffic: every readiness check passes and it is not
 * shutting down).
 */
export class HealthServer implements Service {
  readonly name = 'health-server';
  private readonly checks = new Map<string, ReadinessCheck>();
  private draining = false;
  private server: Server | undefined;

  constructor(
    private readonly registry: Registry,
    private readonly port: number,
    private readonly host = '0.0.0.0',
  ) {}

  addReadinessCheck(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  /** Fails readiness from now on: the first step of an ordered shutdown. */
  markDraining(): void {
    this.draining = true;
  }

  /** Reasons the service is not ready; empty when it is. */
  notReadyReasons(): string[] {
    const reasons: string[] = this.draining ? ['draining'] : [];
    for (const [name, check] of this.checks) {
      const reason = check();
      if (reason !== undefined) reasons.push(`${name}: ${reason}`);
    }
    return reasons;
  }

  get boundPort(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? this.port;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405).end();
      } else if (path === '/metrics') {
        this.registry.metrics().then(
          (body) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(body),
          (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err)),
        );
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        const reasons = this.notReadyReasons();
        res
          .writeHead(reasons.length === 0 ? 200 : 503, { 'content-type': 'text/plain' })
          .end(reasons.length === 0 ? 'ready\n' : `not ready: ${reasons.join('; ')}\n`);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
  }

  close = idempotent(async () => {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  });
}
