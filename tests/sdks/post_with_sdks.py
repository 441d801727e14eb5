"""Posts one event with a vendor's own Python library to an ingest URL, as a customer would.

    python3 post_with_sdks.py posthog|segment|amplitude URL

Exits non-zero when the library reports a failure: each is run in its blocking mode (or with
its delivery callback) so that what our answer makes the library do is visible here.
Requires `pip install posthog segment-analytics-python amplitude-analytics`.
"""

import sys


def posthog(url):
    from posthog import Posthog

    errors = []
    # The legacy capture endpoint (`{host}/batch/`, gzip) through its background consumer,
    # whose `on_error` is how the library reports a refused batch.
    client = Posthog(
        "phc_sdk_test",
        host=url,
        gzip=True,
        disable_geoip=True,
        on_error=lambda e, batch: errors.append(e),
    )
    client.capture(
        "sdk purchase",
        distinct_id="sdk-user",
        properties={"revenue": 49.0, "$set": {"email": "sdk@example.com"}},
        uuid="0196e0a4-4a3c-7c2e-9d55-2b5f0f4a1bff",
    )
    client.flush()
    client.shutdown()
    if errors:
        raise SystemExit(f"posthog reported {errors}")


def segment(url):
    from segment.analytics import Client

    errors = []
    # `{host}/v1/batch` with `{"batch": [...], "writeKey"}`, raising on a refused request.
    client = Client(
        "write-key", host=url, sync_mode=True, gzip=True, on_error=lambda e, b: errors.append(e)
    )
    client.track(
        "sdk-user",
        "SDK Order Completed",
        {"revenue": 49.0},
        message_id="sdk-msg-1",
    )
    client.identify("sdk-user", {"email": "sdk@example.com"})
    if errors:
        raise SystemExit(f"segment reported {errors}")


def amplitude(url):
    from amplitude import Amplitude, BaseEvent, Config

    outcomes = []
    config = Config(
        server_url=url,
        flush_queue_size=1,
        callback=lambda event, code, message: outcomes.append((code, message)),
    )
    client = Amplitude("api-key", config)
    client.track(
        BaseEvent(
            event_type="sdk purchase",
            user_id="sdk-user",
            insert_id="sdk-insert-1",
            revenue=49.0,
        )
    )
    client.flush()
    client.shutdown()
    if [code for code, _ in outcomes] != [200]:
        raise SystemExit(f"amplitude reported {outcomes}")


if __name__ == "__main__":
    {"posthog": posthog, "segment": segment, "amplitude": amplitude}[sys.argv[1]](sys.argv[2])
