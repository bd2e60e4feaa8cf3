import type { UpgradeRefusalName } from '@pitwall/live-protocol';

export interface AdmissionOptions {
  maxConnections: number;
  /** Connections not yet authenticated at once (reserving the rest for viewers). */
  maxUnauthenticated: number;
  maxPerAddress: number;
  /** Allowed Origin values, lower case; empty: any. */
  allowedOrigins: readonly string[];
}

/**
 * Which upgrade requests become connections: an optional list of page origins, a cap per client address,
 * a cap on all connections and a smaller one on connections that have not authenticated yet. At either
 * cap, an unauthenticated connection makes room (`evict`: the server closes the oldest one), so sockets
 * that never authenticate can delay a viewer but never keep one out. Counts open connections.
 */
export class Admission {
  private total = 0;
  private unauthenticatedCount = 0;
  private readonly perAddress = new Map<string, number>();
  private readonly origins: ReadonlySet<string> | undefined;

  constructor(private readonly options: AdmissionOptions) {
    this.origins = options.allowedOrigins.length === 0 ? undefined : new Set(options.allowedOrigins.map((o) => o.toLowerCase()));
  }

  get connections(): number {
    return this.total;
  }

  get unauthenticated(): number {
    return this.unauthenticatedCount;
  }

  /**
   * Why an upgrade from `address` with this Origin header ('' when absent) is refused; `evict`: admit it
   * once the oldest unauthenticated connection is closed; undefined: admit.
   */
  refusal(address: string, origin: string): UpgradeRefusalName | 'evict' | undefined {
    // No Origin: not a browser (the policy protects browsers' pages; other clients could send any value).
    if (this.origins !== undefined && origin !== '' && !this.origins.has(origin.toLowerCase())) return 'origin';
    if ((this.perAddress.get(address) ?? 0) >= this.options.maxPerAddress) return 'address_full';
    if (this.unauthenticatedCount >= this.options.maxUnauthenticated) return 'evict';
    if (this.total >= this.options.maxConnections) return this.unauthenticatedCount > 0 ? 'evict' : 'full';
    return undefined;
  }

  /** A connection from `address` opened (unauthenticated). */
  opened(address: string): void {
    this.total++;
    this.unauthenticatedCount++;
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
  }

  /** A connection authenticated for the first time. */
  authenticated(): void {
    this.unauthenticatedCount--;
  }

  /** A connection from `address` closed. */
  closed(address: string, wasAuthenticated: boolean): void {
    this.total--;
    if (!wasAuthenticated) this.unauthenticatedCount--;
    const count = (this.perAddress.get(address) ?? 1) - 1;
    if (count > 0) this.perAddress.set(address, count);
    else this.perAddress.delete(address);
  }
}

/**
 * The client address of an upgrade: the configured header's value when a proxy in front sets it (of
 * X-Forwarded-For, the last entry: the one the nearest proxy added), else the TCP peer.
 */
export function clientAddress(peer: string, headerValue: string | undefined): string {
  if (headerValue === undefined) return peer;
  const last = headerValue.split(',').pop()?.trim() ?? '';
  return last === '' ? peer : last;
}
