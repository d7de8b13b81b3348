#!/usr/bin/env python3
"""Request drivers for scripts/bench-issue.sh that wrk cannot do: an exact number of
requests, each JWT used once, and process-per-request timings. Standard library only.

  bench_client.py once --url URL --tokens FILE --concurrency C [--burst]
      POSTs once per line of FILE (a JWT), with C requests in flight. With --burst, C
      threads each open their connection first, then all send at the same moment.
  bench_client.py serial --runs N -- CMD ARG...
      Runs CMD N times, one after another; fails if any run fails.

Each prints one JSON object: how many requests or runs, status counts, p50/p90/p99 in ms.
"""

import argparse
import http.client
import json
import queue
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter


def percentiles(samples_ms) -> dict:
    ordered = sorted(samples_ms)
    if not ordered:
        return {}

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": round(ordered[-1], 2)}


class Target:
    """Where to POST, parsed once."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.hostname != "127.0.0.1":
            raise SystemExit(f"only http:// or https:// URLs on 127.0.0.1, got {url!r}")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port or (443 if self.https else 80)
        self.path = parts.path or "/"

    def connect(self) -> http.client.HTTPConnection:
        # Over https, the default context: it trusts what SSL_CERT_FILE names.
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=120)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        conn.connect()
        return conn

    def post(self, conn: http.client.HTTPConnection, token: str) -> int:
        conn.request("POST", self.path, headers={"Authorization": f"Bearer {token}", "Content-Length": "0"})
        answer = conn.getresponse()
        answer.read()
        return answer.status


def once(args) -> dict:
    with open(args.tokens) as f:
        tokens = [line.strip() for line in f if line.strip()]
    target = Target(args.url)
    work = queue.SimpleQueue()
    for token in tokens:
        work.put(token)
    threads = min(args.concurrency, len(tokens))
    start = threading.Barrier(threads + 1)
    statuses, latencies, lock = Counter(), [], threading.Lock()

    def worker():
        conn = target.connect() if args.burst else None
        start.wait()
        while True:
            try:
                token = work.get_nowait()
            except queue.Empty:
                break
            began = time.perf_counter()
            try:
                conn = conn or target.connect()
                status = str(target.post(conn, token))
            except (OSError, http.client.HTTPException) as e:
                status, conn = type(e).__name__, None
            elapsed = (time.perf_counter() - began) * 1000
            with lock:
                statuses[status] += 1
                latencies.append(elapsed)
        if conn:
            conn.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    start.wait()  # every connection is open: go
    began = time.perf_counter()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - began
    return {"requests": len(tokens), "seconds": round(seconds, 2), "statuses": dict(statuses), **percentiles(latencies)}


def serial(args) -> dict:
    latencies = []
    for _ in range(args.runs):
        began = time.perf_counter()
        done = subprocess.run(args.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        latencies.append((time.perf_counter() - began) * 1000)
        if done.returncode != 0:
            sys.stderr.write(done.stderr.decode(errors="replace"))
            raise SystemExit(f"{args.command[0]} failed with exit status {done.returncode}")
    return {"runs": args.runs, **percentiles(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Request drivers for the load benchmark.")
    sub = parser.add_subparsers(dest="mode", required=True)
    o = sub.add_parser("once", help="one POST per JWT in a file")
    o.add_argument("--url", required=True)
    o.add_argument("--tokens", required=True, help="file with one JWT a line")
    o.add_argument("--concurrency", type=int, required=True)
    o.add_argument("--burst", action="store_true", help="open every connection first, then send at once")
    s = sub.add_parser("serial", help="time a command run N times in a row")
    s.add_argument("--runs", type=int, required=True)
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARG...")
    args = parser.parse_args()
    if args.mode == "serial":
        if args.command[:1] == ["--"]:
            args.command = args.command[1:]
        if not args.command:
            parser.error("serial needs a command after --")
    print(json.dumps(once(args) if args.mode == "once" else serial(args)))


if __name__ == "__main__":
    main()
