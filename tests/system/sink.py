#!/usr/bin/env python3
"""The downstream of the system test's `http` handler: answers 200 to every call and counts calls
per `webhook-id` (the event id), so the test can tell events that reached it from calls repeated.

GET /stats -> {"calls": N, "distinct": N, "duplicates": N}; POST /reset zeroes the counts.
usage: sink.py HOST PORT
"""
import json
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

calls = Counter()
lock = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the dispatcher reuses its connections

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        if self.path == "/reset":
            with lock:
                calls.clear()
        else:
            with lock:
                calls[self.headers.get("webhook-id", "")] += 1
        self.answer({"ok": True})

    def do_GET(self):
        with lock:
            total, distinct = sum(calls.values()), len(calls)
        self.answer({"calls": total, "distinct": distinct, "duplicates": total - distinct})

    def answer(self, value):
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 refused the dispatchers' bursts

    def handle_error(self, request, client_address):
        pass  # a replica killed mid-call resets its connection: not the sink's failure


if __name__ == "__main__":
    Server((sys.argv[1], int(sys.argv[2])), Sink).serve_forever()
