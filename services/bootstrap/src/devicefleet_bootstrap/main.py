"""``devicefleet-bootstrap``: make the brokers and the database ready for the services.

migrate                 apply database migrations (idempotent, locked)
topics                  create the Kafka topics (idempotent)
register --profile P --fleet F --count N [--start S]
                        upsert simulated devices into the device registry
all                     migrate + topics
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from typing import Any

import orjson
import psycopg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed
from yoyo import get_backend, read_migrations

from devicefleet_bootstrap.settings import Settings
from devicefleet_common.devices import default_parameters, fleet_device_ids
from devicefleet_common.logging import get_logger, setup_logging
from devicefleet_common.schemas import Profile

log = get_logger("devicefleet.bootstrap")


def _yoyo_url(database_url: str) -> str:
    scheme, rest = database_url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme.startswith("postgres") else database_url


def migrate(settings: Settings) -> int:
    @retry(
        stop=stop_after_delay(settings.wait_timeout),
        wait=wait_fixed(1),
        retry=retry_if_exception_type(psycopg.OperationalError),
        reraise=True,
    )
    def wait_for_database() -> None:
        with psycopg.connect(settings.database_url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")

    wait_for_database()
    backend = get_backend(_yoyo_url(settings.database_url))
    migrations = read_migrations(str(resources.files("devicefleet_bootstrap") / "migrations"))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    log.info("migrations applied", applied=[m.id for m in pending], total=len(migrations))
    return len(pending)


def create_topics(settings: Settings) -> list[str]:
    admin = AdminClient(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, **settings.kafka_security_config()}
    )

    @retry(
        stop=stop_after_delay(settings.wait_timeout),
        wait=wait_fixed(1),
        retry=retry_if_exception_type(KafkaException),
        reraise=True,
    )
    def existing_topics() -> set[str]:
        return set(admin.list_topics(timeout=5).topics)

    wanted = {
        settings.raw_topic: {},
        settings.decoded_topic: {},
        # Dead letters are kept for inspection and replay, not compacted away.
        settings.dead_letter_topic: {"retention.ms": str(14 * 24 * 3600 * 1000)},
    }
    missing = [name for name in wanted if name not in existing_topics()]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=settings.topic_partitions,
                    replication_factor=settings.topic_replication_factor,
                    config=wanted[name],
                )
                for name in missing
            ]
        )
        for future in futures.values():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: a concurrent bootstrap won
                    raise
    log.info("topics ready", created=missing, topics=sorted(wanted))
    return missing


def register_devices(
    database_url: str, profile: Profile, fleet: str, count: int, start: int = 0, site: str = "demo"
) -> int:
    """Upsert devices start..start+count-1 of a simulated fleet into the registry."""
    params = default_parameters(profile)
    rows: list[tuple[Any, ...]] = [
        (dev, profile, fleet, site, params.get("model"), orjson.dumps(params).decode())
        for dev in fleet_device_ids(profile, fleet, start, count)
    ]
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO device_parameters (device_id, profile, fleet, site, model, params)
            VALUES (%s, %s, %s, %s, %s, %s::jsonb)
            ON CONFLICT (device_id) DO UPDATE
               SET profile = excluded.profile, fleet = excluded.fleet, site = excluded.site,
                   model = excluded.model, params = excluded.params, updated_at = now()
            """,
            rows,
        )
    log.info("devices registered", profile=profile, fleet=fleet, start=start, count=count)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    setup_logging("bootstrap", settings.log_level, settings.environment)
    parser = argparse.ArgumentParser(
        prog="devicefleet-bootstrap",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate")
    sub.add_parser("topics")
    sub.add_parser("all")
    reg = sub.add_parser("register")
    reg.add_argument("--profile", choices=["truck", "f2", "generic"], required=True)
    reg.add_argument("--fleet", required=True)
    reg.add_argument("--count", type=int, required=True)
    reg.add_argument("--start", type=int, default=0)
    reg.add_argument("--site", default="demo")
    args = parser.parse_args(argv)
    try:
        if args.command in ("migrate", "all"):
            migrate(settings)
        if args.command in ("topics", "all"):
            create_topics(settings)
        if args.command == "register":
            register_devices(
                settings.database_url, args.profile, args.fleet, args.count, args.start, args.site
            )
    except (psycopg.Error, KafkaException) as exc:
        log.error("bootstrap failed", command=args.command, error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
