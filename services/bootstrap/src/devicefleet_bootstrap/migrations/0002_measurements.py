"""Time-series table and its hourly rollup.

With the TimescaleDB extension available the table becomes a hypertable with compression;
otherwise it is natively range-partitioned by day and the sink creates each day's partition
(``devicefleet_ensure_partition``) before writing into it. The unique key
``(message_id, metric, time)`` is what makes redelivered messages disappear.
"""

from yoyo import step

COLUMNS = """
    time           timestamptz NOT NULL,
    device_id      text NOT NULL,
    metric         text NOT NULL,
    value          double precision,
    value_text     text,
    unit           text,
    message_id     text NOT NULL,
    profile        text NOT NULL,
    component_type text,
    connector_mode text,
    attributes     jsonb NOT NULL DEFAULT '{}'::jsonb,
    ingested_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT iot_measurements_message_metric_key UNIQUE (message_id, metric, time)
"""
# The column list is embedded in EXECUTE '...' strings below, so its quotes are doubled.
QUOTED_COLUMNS = COLUMNS.replace("'", "''")

steps = [
    step(
        f"""
        DO $$
        BEGIN
          IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
            EXECUTE 'CREATE TABLE iot_measurements ({QUOTED_COLUMNS})';
            PERFORM create_hypertable('iot_measurements', 'time',
                                      chunk_time_interval => interval '1 day');
            EXECUTE 'ALTER TABLE iot_measurements SET (timescaledb.compress,
                     timescaledb.compress_segmentby = ''device_id, metric'')';
            PERFORM add_compression_policy('iot_measurements', interval '7 days');
          ELSE
            EXECUTE 'CREATE TABLE iot_measurements ({QUOTED_COLUMNS}) PARTITION BY RANGE (time)';
          END IF;
        END
        $$
        """,  # noqa: S608 - COLUMNS is the constant above, not input
        "DROP TABLE iot_measurements",
    ),
    step(
        "CREATE INDEX iot_measurements_device_time ON iot_measurements (device_id, time DESC)",
        "DROP INDEX iot_measurements_device_time",
    ),
    step(
        """
        CREATE FUNCTION devicefleet_ensure_partition(day date) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
          part text := format('iot_measurements_p%s', to_char(day, 'YYYYMMDD'));
        BEGIN
          -- Hypertables manage their own chunks.
          IF (SELECT relkind FROM pg_class WHERE oid = 'iot_measurements'::regclass) <> 'p' THEN
            RETURN;
          END IF;
          EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF iot_measurements '
            'FOR VALUES FROM (%L) TO (%L)',
            part, day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
        EXCEPTION WHEN duplicate_table THEN
          NULL;  -- another sink created it first
        END
        $$
        """,
        "DROP FUNCTION devicefleet_ensure_partition(date)",
    ),
    step(
        """
        CREATE TABLE iot_hourly_stats (
            bucket    timestamptz NOT NULL,
            device_id text NOT NULL,
            metric    text NOT NULL,
            samples   bigint NOT NULL,
            sum       double precision NOT NULL,
            min       double precision NOT NULL,
            max       double precision NOT NULL,
            avg       double precision GENERATED ALWAYS AS (sum / samples) STORED,
            PRIMARY KEY (bucket, device_id, metric)
        )
        """,
        "DROP TABLE iot_hourly_stats",
    ),
]
