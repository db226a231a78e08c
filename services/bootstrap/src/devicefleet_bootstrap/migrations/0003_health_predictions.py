"""Health predictions beside the readings, and each device's latest verdict.

``device_health_predictions`` keeps one row per scored reading (unique by message id, like
the readings, so a replayed batch adds nothing). ``device_health`` holds only the newest
prediction per device; the operator counts it per fleet for the DeviceFleet status.
"""

from yoyo import step

COLUMNS = """
    time            timestamptz NOT NULL,
    device_id       text NOT NULL,
    fleet           text,
    message_id      text NOT NULL,
    model_version   text NOT NULL,
    state           text NOT NULL,
    probabilities   jsonb NOT NULL,
    features        jsonb NOT NULL,
    features_source text NOT NULL,
    true_state      text,
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT device_health_predictions_message_key UNIQUE (message_id, time)
"""
QUOTED_COLUMNS = COLUMNS.replace("'", "''")

steps = [
    step(
        f"""
        DO $$
        BEGIN
          EXECUTE 'CREATE TABLE device_health_predictions ({QUOTED_COLUMNS})';
          IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
            PERFORM create_hypertable('device_health_predictions', 'time',
                                      chunk_time_interval => interval '1 day');
          END IF;
        END
        $$
        """,  # noqa: S608 - COLUMNS is the constant above, not input
        "DROP TABLE device_health_predictions",
    ),
    step(
        "CREATE INDEX device_health_predictions_device_time "
        "ON device_health_predictions (device_id, time DESC)",
        "DROP INDEX device_health_predictions_device_time",
    ),
    step(
        """
        CREATE TABLE device_health (
            device_id     text PRIMARY KEY,
            fleet         text,
            time          timestamptz NOT NULL,
            message_id    text NOT NULL,
            model_version text NOT NULL,
            state         text NOT NULL,
            updated_at    timestamptz NOT NULL DEFAULT now()
        )
        """,
        "DROP TABLE device_health",
    ),
    step(
        "CREATE INDEX device_health_fleet ON device_health (fleet, time DESC)",
        "DROP INDEX device_health_fleet",
    ),
]
