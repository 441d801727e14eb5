#!/usr/bin/env python3
"""Consume gf.events.attributed.v1 and validate every message against the published schema.

A starting point for a downstream team: a consumer group of its own, at-least-once processing
(offsets committed after a message is handled), deduplication by `id`, and the newest
`mapperVersion` winning when a replay republishes an event.

    pip install -r requirements.txt
    python consumer.py --brokers 127.0.0.1:9092 --schemas ../../schemas/json

Prints one JSON line per distinct event; exits 1 if a message does not match the schema.
"""

import argparse
import json
import pathlib
import sys
import time

from confluent_kafka import Consumer, KafkaError
from jsonschema import Draft202012Validator
from referencing import Registry, Resource


def validator(schemas: pathlib.Path) -> Draft202012Validator:
    """The attributed-event schema, with the files it refers to resolved by their $id."""
    resources = []
    for path in sorted(schemas.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry = Registry().with_resources(resources)
    root = json.loads((schemas / "attributed-event.v1.schema.json").read_text())
    return Draft202012Validator(root, registry=registry)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="gf.events.attributed.v1")
    parser.add_argument("--group", default="example-attributed-consumer")
    parser.add_argument("--schemas", type=pathlib.Path, default=pathlib.Path(__file__).parent / "../../schemas/json")
    parser.add_argument("--product", help="only events of this product id")
    parser.add_argument("--max-events", type=int, help="stop after this many distinct events")
    parser.add_argument("--idle-timeout", type=float, help="stop after this many seconds without a message")
    args = parser.parse_args()

    check = validator(args.schemas)
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        # A new group starts at the oldest retained event; afterwards at its committed offsets.
        "auto.offset.reset": "earliest",
        # Commit only what was handled: after a crash, unhandled messages come again.
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
    })
    consumer.subscribe([args.topic])
    seen = {}  # id -> mapperVersion: at-least-once delivery means duplicates; keep the newest.
    invalid = 0
    last_message = time.monotonic()
    try:
        while args.max_events is None or len(seen) < args.max_events:
            if args.idle_timeout is not None and time.monotonic() - last_message > args.idle_timeout:
                break
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    print(f"consumer error: {message.error()}", file=sys.stderr)
                continue
            last_message = time.monotonic()
            event = json.loads(message.value())
            errors = sorted(check.iter_errors(event), key=lambda e: list(e.path))
            if errors:
                invalid += 1
                for error in errors:
                    where = "/".join(map(str, error.path)) or "(root)"
                    print(f"invalid message at {message.partition()}@{message.offset()}: {where}: {error.message}", file=sys.stderr)
            elif args.product is None or event["productId"] == args.product:
                version = event["mapperVersion"]
                if seen.get(event["id"], 0) < version:
                    seen[event["id"]] = version
                    print(json.dumps({
                        "id": event["id"],
                        "eventType": event["eventType"],
                        "influence": event["influence"],
                        "value": event["value"],
                        "userId": event["userId"],
                        "organizationId": event["organizationId"],
                        "conversationId": event["conversationId"],
                        "mapperVersion": version,
                        "key": (message.key() or b"").decode(),
                    }), flush=True)
            consumer.commit(message=message, asynchronous=False)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    print(f"{len(seen)} events, {invalid} invalid messages", file=sys.stderr)
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
