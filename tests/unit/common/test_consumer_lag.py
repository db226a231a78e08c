from __future__ import annotations

import orjson

from devicefleet_common.kafka import CONSUMER_LAG, publish_consumer_lag


def stats(partitions: dict[str, int]) -> str:
    return orjson.dumps(
        {
            "topics": {
                "raw_lag_test": {
                    "partitions": {p: {"consumer_lag": lag} for p, lag in partitions.items()}
                    | {"-1": {"consumer_lag": -1}}
                }
            }
        }
    ).decode()


def lag_series() -> dict[str, float]:
    return {
        s.labels["partition"]: s.value
        for metric in CONSUMER_LAG.collect()
        for s in metric.samples
        if s.labels.get("topic") == "raw_lag_test"
    }


def test_lag_per_assigned_partition_and_revoked_ones_disappear() -> None:
    publish_consumer_lag(stats({"0": 5, "1": 7, "2": -1}))
    assert lag_series() == {"0": 5, "1": 7}
    # Partition 1 revoked in a rebalance: librdkafka stops reporting a lag for it.
    publish_consumer_lag(stats({"0": 2, "1": -1}))
    assert lag_series() == {"0": 2}
