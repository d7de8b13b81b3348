#!/usr/bin/env python3
"""A reverse proxy in front of moto for the local stack and the load benchmark.

  moto_proxy.py --upstream http://127.0.0.1:5055 [--port P] [--port-file FILE]

moto answers ECR GetAuthorizationToken with a canned `expiresAt` of 2015-01-01; real ECR
answers twelve hours from now. This proxy forwards every request to moto unchanged (the
Host header included, so SigV4 signatures stay valid) and rewrites that one field, as the
integration tests' proxy does (tests/api/helpers/proxy.rs). It also counts the AWS calls
it forwards, by operation, so a benchmark can tell how often the service went upstream:

  GET /_proxy/calls   {"AssumeRole": 12, "GetAuthorizationToken": 12, ...}

(No AWS API uses that path.) Standard library only; listens on 127.0.0.1 alone. With
--port 0 it picks a free port, and --port-file receives the port once it listens.
"""

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Real ECR authorization tokens live twelve hours.
ECR_TOKEN_LIFETIME_SECS = 12 * 3600
COUNTER_PATH = "/_proxy/calls"
# Hop-by-hop headers (RFC 9110 section 7.6.1) and the framing this proxy redoes itself.
NOT_FORWARDED = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


def operation(headers, body: bytes) -> str:
    """The AWS operation of a request: JSON protocols name it in X-Amz-Target
    (`AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken`), query protocols such as
    STS in the form body (`Action=AssumeRole&...`)."""
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    if "x-www-form-urlencoded" in headers.get("Content-Type", ""):
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if form.get("Action"):
            return form["Action"][0]
    return "other"


def realistic_expiry(body: bytes) -> bytes:
    """Sets every authorizationData entry's expiresAt (epoch seconds) to twelve hours on."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    expires_at = int(time.time()) + ECR_TOKEN_LIFETIME_SECS
    for entry in document.get("authorizationData") or []:
        entry["expiresAt"] = expires_at
    return json.dumps(document).encode()


class Proxy:
    """Shared state: where moto is, and the calls forwarded so far."""

    def __init__(self, upstream: str):
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise SystemExit(f"--upstream must be an http:// URL, got {upstream!r}")
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.calls = Counter()
        self.lock = threading.Lock()
        # One upstream connection per handler thread (a thread serves one client
        # connection), so keep-alive on both sides and no locking on the hot path.
        self.local = threading.local()

    def count(self, op: str) -> None:
        with self.lock:
            self.calls[op] += 1

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.calls)

    def upstream(self, method: str, path: str, headers, body: bytes):
        """Sends one request to moto; reconnects once if a kept-alive connection went stale."""
        for attempt in (1, 2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self.local.conn = conn
            try:
                conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers.items():
                    if name.lower() not in NOT_FORWARDED:
                        conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                answer = conn.getresponse()
                return answer.status, answer.getheaders(), answer.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def handler(proxy: Proxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the AWS SDKs expect

        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            pass  # one line per request would drown the log under load

        def read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def reply(self, status: int, headers, body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in NOT_FORWARDED:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def forward(self) -> None:
            body = self.read_body()
            if self.path == COUNTER_PATH and self.command == "GET":
                counts = json.dumps(proxy.snapshot()).encode()
                self.reply(200, [("Content-Type", "application/json")], counts)
                return
            op = operation(self.headers, body)
            proxy.count(op)
            try:
                status, headers, answer = proxy.upstream(self.command, self.path, self.headers, body)
            except (http.client.HTTPException, OSError) as e:
                message = f"moto_proxy: upstream {proxy.host}:{proxy.port} failed: {e}\n"
                self.reply(502, [("Content-Type", "text/plain")], message.encode())
                return
            if op == "GetAuthorizationToken" and 200 <= status < 300:
                answer = realistic_expiry(answer)
            self.reply(status, headers, answer)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = forward

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Realistic-expiry, call-counting proxy in front of moto.")
    parser.add_argument("--upstream", required=True, help="moto's URL, e.g. http://127.0.0.1:5055")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--port-file", help="write the port here once listening")
    args = parser.parse_args()

    proxy = Proxy(args.upstream)
    ThreadingHTTPServer.request_queue_size = 1024  # a cold burst opens hundreds at once
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(proxy))
    port = server.server_address[1]
    if args.port_file:
        tmp = Path(f"{args.port_file}.tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(args.port_file)
    print(f"moto_proxy on http://127.0.0.1:{port} in front of {args.upstream}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
