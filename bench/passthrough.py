"""P3's baseline: a confluent-kafka pass-through with the processor's delivery guarantee and
client settings (``consume(500)`` → ``produce`` each record unchanged → wait for the acks →
commit), and nothing else. Runs until it has forwarded ``--count`` records.

    python -m bench.passthrough --source T1 --target T2 --group G --count N
"""

from __future__ import annotations

import argparse

from confluent_kafka import Consumer, Producer

from bench.support import KAFKA
from devicefleet_common.kafka import consumer_config, next_offsets, producer_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    consumer = Consumer(consumer_config(KAFKA, args.group, "bench-passthrough"))
    producer = Producer(producer_config(KAFKA, "bench-passthrough"))
    consumer.subscribe([args.source])
    forwarded = 0
    while forwarded < args.count:
        messages = [m for m in consumer.consume(args.batch, 0.5) if m.error() is None]
        if not messages:
            continue
        for message in messages:
            producer.produce(args.target, message.value(), message.key(), headers=message.headers())
        if producer.flush(30) != 0:
            raise SystemExit("records left undelivered")
        consumer.commit(offsets=next_offsets(messages), asynchronous=False)
        forwarded += len(messages)
    consumer.close()


if __name__ == "__main__":
    main()
