import { Counter, Gauge, Histogram, LATENCY_BUCKETS_SECONDS, type Registry } from '@pitwall/platform';

/** Every metric of the gateway, prefixed `pitwall_live_gateway_`. Labels are low-cardinality only. */
export function createGatewayMetrics(registry: Registry) {
  const p = 'pitwall_live_gateway_';
  const registers = [registry];
  return {
    connections: new Gauge({ name: `${p}connections`, help: 'Open WebSocket connections', registers }),
    unauthenticatedConnections: new Gauge({
      name: `${p}unauthenticated_connections`,
      help: 'Open WebSocket connections that have not authenticated yet',
      registers,
    }),
    connectionsOpened: new Counter({
      name: `${p}connections_opened_total`,
      help: 'Upgrade requests by outcome (accepted, rejected_full, rejected_address, rejected_origin, rejected_draining)',
      labelNames: ['result'] as const,
      registers,
    }),
    connectionsClosed: new Counter({
      name: `${p}connections_closed_total`,
      help: 'Closed connections by reason (client, or the label of the disconnect in @pitwall/live-protocol DISCONNECTS)',
      labelNames: ['reason'] as const,
      registers,
    }),
    authentications: new Counter({
      name: `${p}authentications_total`,
      help: 'Token verifications by result (ok, invalid, expired, unavailable, rate_limited)',
      labelNames: ['result'] as const,
      registers,
    }),
    subscriptions: new Gauge({ name: `${p}subscriptions`, help: 'Live subscriptions (connection x event)', registers }),
    watchedEvents: new Gauge({ name: `${p}watched_events`, help: 'Events with at least one subscriber on this pod', registers }),
    subscribeRequests: new Counter({
      name: `${p}subscribe_requests_total`,
      help: 'Subscribe requests by outcome (ok, forbidden, not_found, authorization_unavailable, rate_limited, limit, expired)',
      labelNames: ['result'] as const,
      registers,
    }),
    unsubscribes: new Counter({
      name: `${p}unsubscribes_total`,
      help: 'Subscriptions ended by reason (client, forbidden, closed)',
      labelNames: ['reason'] as const,
      registers,
    }),
    messagesRejected: new Counter({
      name: `${p}messages_rejected_total`,
      help: 'Client messages refused (bad_request, binary, unauthenticated)',
      labelNames: ['reason'] as const,
      registers,
    }),
    authorizationCalls: new Counter({
      name: `${p}authorization_calls_total`,
      help: 'Directus authorization calls (GET /items/events/:id) by result (allowed, forbidden, not_found, unavailable)',
      labelNames: ['result'] as const,
      registers,
    }),
    authorizationDuration: new Histogram({
      name: `${p}authorization_duration_seconds`,
      help: 'Latency of Directus authorization calls by result',
      labelNames: ['result'] as const,
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    }),
    claimAuthorizations: new Counter({
      name: `${p}claim_authorizations_total`,
      help:
        "Subscribes and re-checks decided from the token's pitwall_events claim (allowed) or left to Directus " +
        '(not_listed, partial, no_claim)',
      labelNames: ['result'] as const,
      registers,
    }),
    revalidations: new Counter({
      name: `${p}revalidations_total`,
      help:
        'Re-authorizations of live subscriptions by result (allowed, forbidden, not_found, unavailable; claim: the refreshed ' +
        'token still lists the event, no Directus call): periodic ones of subscriptions Directus authorized, and those of ' +
        'claim-authorized subscriptions at a token refresh',
      labelNames: ['result'] as const,
      registers,
    }),
    directusCalls: new Counter({
      name: `${p}directus_calls_total`,
      help:
        'Calls to Directus by purpose (verify, authorize, entries, entries_refresh) and result (200, 401, 403, 404, 429, 5xx, other, unreachable, ' +
        "limited: refused by the gateway's own limiter, abandoned: dropped from its queue because every connection " +
        'that asked had closed)',
      labelNames: ['call', 'result'] as const,
      registers,
    }),
    cacheHits: new Counter({
      name: `${p}cache_hits_total`,
      help: 'Cache hits by cache (permission, token, refused_token, entries)',
      labelNames: ['cache'] as const,
      registers,
    }),
    cacheMisses: new Counter({
      name: `${p}cache_misses_total`,
      help: 'Cache misses by cache (permission, token, entries)',
      labelNames: ['cache'] as const,
      registers,
    }),
    entriesFetches: new Counter({
      name: `${p}entries_fetches_total`,
      help: 'Reads of event entries from Directus by result (ok, error)',
      labelNames: ['result'] as const,
      registers,
    }),
    positionsReceived: new Counter({ name: `${p}positions_received_total`, help: 'Positions read from the stream', registers }),
    livePositionsReceived: new Counter({
      name: `${p}live_stream_positions_received_total`,
      help: 'Positions read from the live-only streams (records ingestion could not admit to the durable shards)',
      registers,
    }),
    positionsDropped: new Counter({
      name: `${p}positions_dropped_total`,
      help: 'Positions not forwarded, by reason: stale (not newer than the last one forwarded for the device), future (beyond GATEWAY_MAX_FUTURE_MS)',
      labelNames: ['reason'],
      registers,
    }),
    warmBytes: new Counter({
      name: `${p}warm_bytes_total`,
      help: 'Bytes of stream entries read to warm the latest-position cache at start',
      registers,
    }),
    invalidEntries: new Counter({ name: `${p}stream_entries_invalid_total`, help: 'Stream entries that were not a Position', registers }),
    streamReadErrors: new Counter({ name: `${p}stream_read_errors_total`, help: 'Failed XREADGROUP calls', registers }),
    streamReadLag: new Gauge({
      name: `${p}stream_read_lag_seconds`,
      help: 'Age (now minus entry id time) of the newest entry of the last non-empty read',
      registers,
    }),
    groupsCollected: new Counter({
      name: `${p}groups_collected_total`,
      help: 'Fan-out groups of dead pods destroyed',
      registers,
    }),
    framesPublished: new Counter({
      name: `${p}frames_published_total`,
      help: 'Positions frames serialised and published once to a topic (whatever the recipients)',
      registers,
    }),
    framesSent: new Counter({
      name: `${p}frames_sent_total`,
      help: 'Frames sent, counted per recipient, by kind (positions, snapshot, conflated, recovered, control)',
      labelNames: ['kind'] as const,
      registers,
    }),
    bytesSent: new Counter({
      name: `${p}bytes_sent_total`,
      help: 'Payload bytes sent, counted per recipient, by kind',
      labelNames: ['kind'] as const,
      registers,
    }),
    positionsSent: new Counter({
      name: `${p}positions_sent_total`,
      help: 'Positions sent, counted per recipient, by kind (positions, snapshot (snapshots and trails), conflated, recovered)',
      labelNames: ['kind'] as const,
      registers,
    }),
    fanoutLatency: new Histogram({
      name: `${p}fanout_latency_seconds`,
      help: 'Ingestion receive time (rx) to publish, per position',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    conflatedClients: new Gauge({
      name: `${p}conflated_clients`,
      help: 'Clients currently conflated (too slow for every frame)',
      registers,
    }),
    conflations: new Counter({
      name: `${p}conflations_total`,
      help: 'Times a client fell behind and was switched to conflation',
      registers,
    }),
    conflationDrops: new Counter({
      name: `${p}conflation_drops_total`,
      help: 'Positions a conflated client never got because a newer one of the same device replaced them',
      registers,
    }),
    slowClientsClosed: new Counter({
      name: `${p}slow_clients_closed_total`,
      help: 'Clients closed for staying behind too long',
      registers,
    }),
    latestCacheDevices: new Gauge({ name: `${p}latest_cache_devices`, help: 'Devices in the latest-position cache', registers }),
    historyBytes: new Gauge({
      name: `${p}history_bytes`,
      help: 'Estimated heap bytes of the position history (resumes and trails), bounded by GATEWAY_HISTORY_MAX_BYTES',
      registers,
    }),
    historyPositions: new Gauge({ name: `${p}history_positions`, help: 'Positions held in the history', registers }),
    resumes: new Counter({
      name: `${p}resumes_total`,
      help: 'Subscribes with a cursor (since) by outcome (recoverable, too_old, ahead, invalid, not_new_or_behind)',
      labelNames: ['result'] as const,
      registers,
    }),
  };
}

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;
