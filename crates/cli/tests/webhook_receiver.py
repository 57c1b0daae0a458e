"""A webhook receiver for the tests, verifying every message with `standardwebhooks`, the
specification's own Python library (an implementation independent of Lifeline's).

Prints `port N` once listening on 127.0.0.1. Messages arrive on POST /hook. Control:
  POST /_secret   body: the whsec_ secret to verify with (until then nothing verifies)
  POST /_answer   body: JSON {"status": 200, "retry_after": null, "times": null}: what the next
                  `times` messages (all, when null) are answered; then back to 200
  GET  /_log      JSON list of every request: webhook-id, timestamp header, arrival time, whether
                  it verified, the status answered and the parsed body
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

lock = threading.Lock()
state = {"secret": None, "status": 200, "retry_after": None, "times": None, "log": []}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length)

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_log":
            with lock:
                out = json.dumps(state["log"]).encode()
            self.reply(200, out)
        else:
            self.reply(404)

    def do_POST(self):
        data = self.body()
        if self.path == "/_secret":
            with lock:
                state["secret"] = data.decode().strip()
            return self.reply(204)
        if self.path == "/_answer":
            ask = json.loads(data)
            with lock:
                state["status"] = ask.get("status", 200)
                state["retry_after"] = ask.get("retry_after")
                state["times"] = ask.get("times")
            return self.reply(204)
        if self.path != "/hook":
            return self.reply(404)
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            secret = state["secret"]
            status, retry_after = state["status"], state["retry_after"]
            if state["times"] is not None:
                state["times"] -= 1
                if state["times"] <= 0:
                    state.update(status=200, retry_after=None, times=None)
        verified = False
        parsed = None
        if secret:
            try:
                parsed = Webhook(secret).verify(data, headers)
                verified = True
            except WebhookVerificationError:
                pass
        if parsed is None:
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
        with lock:
            state["log"].append(
                {
                    "id": headers.get("webhook-id"),
                    "timestamp": headers.get("webhook-timestamp"),
                    "signatures": len((headers.get("webhook-signature") or "").split()),
                    "arrived": time.time(),
                    "verified": verified,
                    "status": status,
                    "body": parsed,
                }
            )
        extra = [("retry-after", str(retry_after))] if retry_after is not None else []
        self.reply(status, b"", extra)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"port {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
