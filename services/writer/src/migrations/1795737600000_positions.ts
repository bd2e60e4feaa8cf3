import type { MigrationBuilder } from 'node-pg-migrate';

// The telemetry plane's tables (docs/interfaces.md: `positions`), owned by the writer.
//
// positions: one row per (device_id, recorded_at), range-partitioned by recorded_at. The primary
// key serves both SPA queries on history: one device's track over a window is a range scan of it
// (partitions outside the window are pruned), and one device's latest row is a backward scan (a
// separate (device_id, recorded_at DESC) index would duplicate it: B-trees scan both ways).
// The DEFAULT partition catches rows for which no partition exists yet (old backlog, clocks ahead),
// so an insert is never rejected; partition maintenance later moves them into their own partition.
//
// positions_latest: the newest row per device, upserted in the same transaction as the batch. The
// live snapshot of an event (latest position of a few hundred devices) is then one index probe per
// device, however many partitions `positions` has. fillfactor leaves room for HOT updates.

export function up(pgm: MigrationBuilder): void {
  pgm.sql(`
    CREATE TABLE positions (
      device_id   text             NOT NULL,
      recorded_at timestamptz      NOT NULL,
      received_at timestamptz,
      lat         double precision NOT NULL,
      lon         double precision NOT NULL,
      altitude_m  real,
      speed_kmh   real,
      heading_deg real,
      satellites  smallint,
      attributes  jsonb            NOT NULL DEFAULT '{}'::jsonb,
      CONSTRAINT positions_pkey PRIMARY KEY (device_id, recorded_at)
    ) PARTITION BY RANGE (recorded_at);

    CREATE TABLE positions_default PARTITION OF positions DEFAULT;

    CREATE TABLE positions_latest (
      device_id   text             NOT NULL,
      recorded_at timestamptz      NOT NULL,
      received_at timestamptz,
      lat         double precision NOT NULL,
      lon         double precision NOT NULL,
      altitude_m  real,
      speed_kmh   real,
      heading_deg real,
      satellites  smallint,
      attributes  jsonb            NOT NULL DEFAULT '{}'::jsonb,
      CONSTRAINT positions_latest_pkey PRIMARY KEY (device_id)
    ) WITH (fillfactor = 70);

    COMMENT ON TABLE positions IS 'One row per GNSS position of a device (pitwall writer). Partitioned by recorded_at (UTC).';
    COMMENT ON COLUMN positions.device_id IS 'Device IMEI';
    COMMENT ON COLUMN positions.recorded_at IS 'Device (GNSS) time';
    COMMENT ON COLUMN positions.received_at IS 'Time ingestion received the packet';
    COMMENT ON COLUMN positions.attributes IS 'io: fixed-size IO elements by id (raw unsigned value; decimal string beyond 2^53), io_nx: variable-length ones as hex, event_io_id, priority, codec, generation_type';
    COMMENT ON TABLE positions_latest IS 'Newest row of positions per device, maintained by the writer in the same transaction.';
  `);
}

export function down(pgm: MigrationBuilder): void {
  pgm.sql('DROP TABLE IF EXISTS positions_latest; DROP TABLE IF EXISTS positions CASCADE;');
}
