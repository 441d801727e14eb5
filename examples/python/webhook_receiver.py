#!/usr/bin/env python3
"""Receive the pipeline's webhooks and verify each signature with the Standard Webhooks library.

    pip install -r requirements.txt
    WEBHOOK_SECRET=whsec_... python webhook_receiver.py --listen 127.0.0.1:9000

Point an endpoint at it (`gf endpoint create --product ID --url http://127.0.0.1:9000/webhooks
--events '*'`; plain http needs the address in GF_WEBHOOK_ALLOWED_NETS). Answers 204 to a
verified delivery and 401 to anything else; a delivery id seen before is answered 204 again and
not handled twice (retries reuse the id). With --log, appends one JSON line per request.
"""

import argparse
import json
import os
import pathlib
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def secret_from(args) -> str:
    if args.secret_file:
        return pathlib.Path(args.secret_file).read_text().strip()
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        sys.exit("set WEBHOOK_SECRET (the endpoint's whsec_ secret) or pass --secret-file")
    return secret


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:9000")
    parser.add_argument("--secret-file", help="read the secret from this file at each request")
    parser.add_argument("--log", type=pathlib.Path, help="append one JSON line per request")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    handled = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                # Checks the signature and that the timestamp is within five minutes.
                event = Webhook(secret_from(args)).verify(body, headers)
                verified, error = True, None
            except WebhookVerificationError as e:
                event, verified, error = None, False, str(e)
            with lock:
                duplicate = verified and headers.get("webhook-id") in handled
                if verified:
                    handled.add(headers.get("webhook-id"))
                if args.log:
                    entry = {
                        "verified": verified,
                        "duplicate": duplicate,
                        "error": error,
                        "id": headers.get("webhook-id"),
                        "type": event.get("type") if isinstance(event, dict) else None,
                        "headers": {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature") if k in headers},
                        "body": body.decode("utf-8", "replace"),
                    }
                    with args.log.open("a") as f:
                        f.write(json.dumps(entry) + "\n")
            self.send_response(204 if verified else 401)
            self.end_headers()

        def log_message(self, format, *values):
            print(f"{self.address_string()} {format % values}", file=sys.stderr)

    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"listening on http://{host}:{server.server_port}/", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
