#!/usr/bin/env python3
"""Traffic and checks for scripts/soak.sh; not meant to be run alone.

  soak.py --broker URL --issuer-port P --state-dir D --pid PID --seconds S
          --database-url URL [--workers N]

Drives mixed valid, invalid and hostile requests at the broker from N threads for S
seconds while sampling the broker's RSS, then checks:
  - no 5xx but documented 503s (with Retry-After), and every answer one its scenario allows;
  - RSS flat: the last quarter's peak within 25% (+8 MiB) of the second quarter's;
  - every 200 from the issuing endpoint has its committed audit row;
  - under 1% of issuing requests answered 503 (nothing here should overrun the audit queue).
Prints a summary (also written to D/summary.json); exits 1 if a check fails.
"""

import argparse
import base64
import http.client
import json
import random
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dev_issuer  # noqa: E402  (its key and JWK helpers; it re-executes in .venv if needed)
import jwt  # noqa: E402

ISSUE = "/v1/ecr/authorization-token"


class Minter:
    """Tokens of the dev issuer, honest and hostile."""

    def __init__(self, port: int, state_dir: Path):
        self.key = dev_issuer.load_or_create_key(state_dir)
        self.kid = dev_issuer.public_jwk(self.key)["kid"]
        self.iss = dev_issuer.issuer_url(port)

    def token(self, ttl=600, headers=None, **claims) -> str:
        now = int(time.time())
        body = dict(dev_issuer.DEFAULT_CLAIMS)
        body.update(iss=self.iss, aud="ecr-token-broker", sub="repo:acme/api:ref:refs/heads/main",
                    iat=now, nbf=now, exp=now + ttl)
        body.update(claims)
        header = {"kid": self.kid, **(headers or {})}
        return jwt.encode(body, self.key, algorithm="RS256", headers=header)


def scenarios(m: Minter):
    """(name, weight, expected statuses, request builder) for every kind of traffic."""
    valid = m.token(ttl=3600)

    def tampered():
        t = m.token()
        return t[:-6] + ("AAAAAA" if not t.endswith("AAAAAA") else "BBBBBB")

    def unsigned():
        enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
        return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc({'iss': m.iss, 'sub': 'x', 'aud': 'ecr-token-broker', 'exp': int(time.time()) + 600})}."

    def post(token, body=None, raw=None, extra=None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(extra or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        return "POST", ISSUE, headers, data

    def get(path, token):
        return "GET", path, ({"Authorization": f"Bearer {token}"} if token else {}), b""

    refused = {401, 429}
    return [
        ("issue", 30, {200, 503}, lambda: post(valid)),
        ("issue_narrowed", 10, {200, 503}, lambda: post(valid, {
            "regions": ["us-east-1", "eu-west-1"], "access": "push",
            "repositories": ["acme/api"], "durationSeconds": 900})),
        ("issue_fresh_token", 5, {200, 503}, lambda: post(m.token())),
        ("whoami", 5, {200}, lambda: get("/v1/whoami", valid)),
        ("audit_own", 3, {200, 503}, lambda: get("/v1/audit/issuances?limit=5", valid)),
        ("no_token", 8, refused, lambda: post(None)),
        ("expired", 4, refused, lambda: post(m.token(ttl=-3600))),
        ("tampered", 4, refused, lambda: post(tampered())),
        ("alg_none", 3, refused, lambda: post(unsigned())),
        ("unknown_kid", 3, refused, lambda: post(m.token(headers={"kid": f"k{random.random()}"}))),
        ("crit", 2, refused, lambda: post(m.token(headers={"crit": ["b64"], "b64": False}))),
        ("wrong_audience", 3, refused, lambda: post(m.token(aud="someone-else"))),
        ("garbage_token", 3, refused, lambda: post("x" * random.randint(1, 9000))),
        ("not_allowed", 4, {403, 503}, lambda: post(valid, {"repositories": ["other/x"]})),
        ("foreign_region", 2, {403, 503}, lambda: post(valid, {"region": "ap-south-1"})),
        ("wildcard_claim", 2, {403, 503}, lambda: post(m.token(repository="*"))),
        # Stored as the audit row's subject: it may be refused, but must not sink the batch
        # its neighbours are committed in (their 503s count against "issuing").
        ("nul_in_claim", 1, {200, 400, 403, 503},
         lambda: post(m.token(sub="repo:acme/api:ref:refs/heads/main\u0000x"))),
        ("bad_json", 3, {400, 503}, lambda: post(valid, raw=b'{"region": ')),
        ("huge_body", 2, {413}, lambda: post(valid, raw=b'{"a":"' + b"x" * 70000 + b'"}')),
        ("huge_headers", 1, {431, 0}, lambda: post(valid, extra={f"x-junk-{i}": "y" * 4000 for i in range(8)})),
        ("not_found", 2, {404}, lambda: get("/v1/../../etc/passwd", None)),
    ]


class Worker(threading.Thread):
    def __init__(self, broker: str, plan, deadline: float, results):
        super().__init__(daemon=True)
        url = urllib.parse.urlsplit(broker)
        self.host, self.port = url.hostname, url.port
        self.plan, self.deadline, self.results = plan, deadline, results
        self.conn = None

    def request(self, method, path, headers, data):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                body = response.read()
                return response.status, dict(response.getheaders()), body
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    return 0, {}, b""
        return 0, {}, b""

    def run(self):
        names = [s[0] for s in self.plan]
        weights = [s[1] for s in self.plan]
        by_name = {s[0]: s for s in self.plan}
        while time.time() < self.deadline:
            name, _, allowed, build = by_name[random.choices(names, weights)[0]]
            started = time.perf_counter()
            status, headers, body = self.request(*build())
            elapsed = time.perf_counter() - started
            lowered = {k.lower(): v for k, v in headers.items()}
            self.results.record(name, status, allowed, lowered, elapsed)


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = defaultdict(Counter)
        self.unexpected = []
        self.issued_ids = []
        self.latencies = []

    def record(self, name, status, allowed, headers, elapsed):
        with self.lock:
            self.counts[name][status] += 1
            self.latencies.append(elapsed)
            if status not in allowed or (status == 503 and "retry-after" not in headers):
                if len(self.unexpected) < 50:
                    self.unexpected.append((name, status))
            if status == 200 and name.startswith("issue"):
                self.issued_ids.append(headers.get("x-request-id", ""))


def sample_rss(pid: int, deadline: float, samples: list):
    while time.time() < deadline:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    samples.append((time.time(), int(line.split()[1]) // 1024))
        except OSError:
            samples.append((time.time(), -1))
            return
        time.sleep(2)


def committed_ids(database_url: str) -> set:
    out = subprocess.run(
        ["psql", "-w", "-X", "-Atq", "-d", database_url, "-c",
         "SELECT request_id::text FROM audit_events WHERE outcome = 'issued'"],
        check=True, capture_output=True, text=True).stdout
    return set(out.split())


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--broker", required=True)
    p.add_argument("--issuer-port", type=int, required=True)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--seconds", type=int, required=True)
    p.add_argument("--database-url", required=True)
    p.add_argument("--workers", type=int, default=16)
    args = p.parse_args()

    plan = scenarios(Minter(args.issuer_port, args.state_dir))
    results = Results()
    started = time.time()
    deadline = started + args.seconds
    rss = []
    sampler = threading.Thread(target=sample_rss, args=(args.pid, deadline, rss), daemon=True)
    sampler.start()
    workers = [Worker(args.broker, plan, deadline, results) for _ in range(args.workers)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(args.seconds + 60)
    sampler.join(10)
    elapsed = time.time() - started

    total = sum(sum(c.values()) for c in results.counts.values())
    five_xx = {n: {s: k for s, k in c.items() if s >= 500} for n, c in results.counts.items()}
    five_xx = {n: c for n, c in five_xx.items() if c}
    committed = committed_ids(args.database_url)
    missing = [i for i in results.issued_ids if i not in committed]
    values = [mb for _, mb in rss if mb >= 0]
    quarter = max(1, len(values) // 4)
    early, late = max(values[quarter:2 * quarter] or values), max(values[-quarter:])
    issuing = [c for n, c in results.counts.items() if n.startswith("issue")]
    issuing_total = sum(sum(c.values()) for c in issuing)
    issuing_503 = sum(c[503] for c in issuing)
    latencies = sorted(results.latencies)
    summary = {
        "seconds": round(elapsed),
        "requests": total,
        "requests_per_second": round(total / elapsed),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
        "by_scenario": {n: dict(sorted(c.items())) for n, c in sorted(results.counts.items())},
        "unexpected": results.unexpected,
        "five_xx": five_xx,
        "issued": len(results.issued_ids),
        "issuing_503": issuing_503,
        "issued_without_row": len(missing),
        "rss_mib": {"min": min(values), "second_quarter_peak": early, "last_quarter_peak": late,
                    "max": max(values)},
    }
    checks = {
        "only documented 5xx (503 with Retry-After)":
            not any(s != 503 for c in five_xx.values() for s in c)
            and not any(s == 503 for _, s in results.unexpected),
        "every answer one its scenario allows": not results.unexpected,
        "RSS flat": late <= early * 1.25 + 8 and values[-1] > 0,
        "every 200 has its audit row": not missing and len(results.issued_ids) > 0,
        # Nothing here overruns the audit queue, so 503s mean something went wrong.
        "issuing almost never unavailable (under 1% 503)":
            issuing_503 <= 0.01 * max(1, issuing_total),
    }
    summary["checks"] = checks
    text = json.dumps(summary, indent=2)
    (args.state_dir / "summary.json").write_text(text + "\n")
    print(text)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
