"""Device registry: the processor enriches every message from this table."""

from yoyo import step

steps = [
    step(
        """
        CREATE TABLE device_parameters (
            device_id     text PRIMARY KEY,
            profile       text NOT NULL CHECK (profile IN ('truck', 'f2', 'generic')),
            fleet         text,
            site          text,
            model         text,
            params        jsonb NOT NULL DEFAULT '{}'::jsonb,
            registered_at timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now()
        )
        """,
        "DROP TABLE device_parameters",
    ),
    step(
        "CREATE INDEX device_parameters_updated_at ON device_parameters (updated_at)",
        "DROP INDEX device_parameters_updated_at",
    ),
]
