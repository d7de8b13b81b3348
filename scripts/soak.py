#!/usr/bin/env python3
"""Traffic and checks for scripts/soak.sh; not meant to be run alone.

  soak.py --broker URL --issuer-port P --state-dir D --pid PID --seconds S
          --database-url URL [--workers N] [--profile mixed|strangers]

Drives requests at the broker from N threads for S seconds while sampling the broker's RSS.

The `mixed` profile sends valid, invalid and hostile requests of one caller, whose rate
limit soak.sh opens wide, then checks:
  - no 5xx but documented 503s (with Retry-After), and every answer one its scenario allows;
  - RSS flat: the last quarter's peak within 25% (+8 MiB) of the second quarter's;
  - every 200 from the issuing endpoint has its committed audit row;
  - under 1% of issuing requests answered 503 (nothing here should overrun the audit queue).

The `strangers` profile runs with the default rate limits and an issuer that refuses
replayed `jti`s, remembering enough of them for the real callers' rate: real callers (many
subjects, each within its budget) issue while verified
strangers that no rule admits, a denied identity and an admitted identity sending malformed
bodies push as fast as they can on every endpoint, junk tokens come from rotating addresses
of one IPv6 /64, and slow-header connections hold sockets open. Then it checks:
  - every real caller's request answered 200, and each 200 has its committed audit row;
  - no 5xx at all, and every answer one its scenario allows;
  - each hostile identity (and the junk network) added at most its budget's rows:
    burst + rate x seconds, however fast it sent;
  - RSS flat within 10% once the caches have filled (the peak of the later half of the
    rest of the run against the earlier half's);
  - the replay cache holds only the real callers' tokens.
Prints a summary (also written to D/summary.json); exits 1 if a check fails.
"""

import argparse
import base64
import http.client
import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
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


# The strangers profile's identities. Real callers are many, each well within its budget.
REAL_CALLERS = 100
STRANGERS = 20
DENIED_SUBJECT = "repo:acme/leaky:ref:refs/heads/main"
MALFORMED_SUBJECT = "repo:acme/fuzzer:ref:refs/heads/main"
JUNK_NETWORK = "2001:db8:bad:1"
# The budgets soak.sh leaves at their defaults: [rate_limit] per caller, unadmitted and
# unauthenticated.
ADMITTED_BUDGET = (300, 20.0)
UNADMITTED_BUDGET = (30, 1.0)
UNAUTHENTICATED_BUDGET = (30, 1.0)
# Real callers' tokens live a minute, as CI jobs' short-lived ones do; with the issuer's
# leeway (60 s by default) that is how long the replay cache remembers each.
REAL_TOKEN_SECS = 60
JTI_REMEMBERED_SECS = REAL_TOKEN_SECS + 60


def stranger_scenarios(m: Minter):
    """Real callers among verified strangers, a denied and a malformed identity, and junk."""

    def fresh(sub, ttl=600, **claims):
        return m.token(ttl=ttl, sub=sub, jti=f"{random.getrandbits(64):x}", **claims)

    def request(method, path, token, body=None, extra=None):
        headers = {"Content-Type": "application/json", **(extra or {})}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return method, path, headers, body if body is not None else b""

    def real():
        i = random.randrange(REAL_CALLERS)
        token = fresh(f"repo:acme/svc{i}:ref:refs/heads/main", ttl=REAL_TOKEN_SECS,
                      repository=f"acme/svc{i}")
        return request("POST", ISSUE, token)

    def anything(token):
        """Every endpoint a verified caller may call, malformed bodies included."""
        return random.choice([
            lambda: request("POST", ISSUE, token),
            lambda: request("POST", ISSUE, token, b'{"region": '),
            lambda: request("GET", "/v1/whoami", token),
            lambda: request("GET", "/v1/audit/issuances?limit=5", token),
            lambda: request("GET", "/v1/ecr/login-password", token),
        ])()

    def stranger():
        k = random.randrange(STRANGERS)
        return anything(fresh(f"repo:evil/x{k}:ref:refs/heads/main",
                              repository_owner="evil", repository=f"evil/x{k}"))

    def junk():
        addr = f"{JUNK_NETWORK}:{random.getrandbits(16):x}:{random.getrandbits(16):x}::1"
        return request("POST", ISSUE, "x" * random.randint(10, 2000),
                       extra={"X-Forwarded-For": addr})

    verified = {200, 400, 403, 429}
    return [
        ("real", 30, {200}, real),
        ("stranger", 25, verified, stranger),
        ("denied", 10, verified, lambda: anything(fresh(DENIED_SUBJECT))),
        ("malformed", 10, {400, 429},
         lambda: request("POST", ISSUE, fresh(MALFORMED_SUBJECT, repository="acme/fuzzer"),
                         random.choice([b"{", b"[]", b'{"access": 7}', b"\xff"]))),
        ("junk_ipv6", 25, {401, 429}, junk),
    ]


class SlowHeaders(threading.Thread):
    """Connections that send a header section a byte at a time and never finish it."""

    def __init__(self, broker: str, connections: int, deadline: float):
        super().__init__(daemon=True)
        url = urllib.parse.urlsplit(broker)
        self.addr = (url.hostname, url.port)
        self.connections, self.deadline = connections, deadline
        self.cut = 0

    def open(self):
        sock = socket.create_connection(self.addr, timeout=5)
        sock.sendall(b"POST /v1/ecr/authorization-token HTTP/1.1\r\nHost: soak\r\nX-Slow: ")
        return sock

    def run(self):
        socks = []
        while time.time() < self.deadline:
            while len(socks) < self.connections:
                try:
                    socks.append(self.open())
                except OSError:
                    break
            for sock in list(socks):
                try:
                    sock.sendall(b"a")
                except OSError:
                    self.cut += 1
                    sock.close()
                    socks.remove(sock)
            time.sleep(1)
        for sock in socks:
            sock.close()


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
        self.latencies_by_name = defaultdict(list)
        self.finished_at = defaultdict(list)

    def record(self, name, status, allowed, headers, elapsed):
        with self.lock:
            self.counts[name][status] += 1
            self.latencies.append(elapsed)
            self.latencies_by_name[name].append(elapsed)
            self.finished_at[name].append(time.time())
            if status not in allowed or (status == 503 and "retry-after" not in headers):
                if len(self.unexpected) < 50:
                    self.unexpected.append((name, status))
            if status == 200 and (name.startswith("issue") or name == "real"):
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


def psql(database_url: str, query: str) -> str:
    return subprocess.run(["psql", "-w", "-X", "-Atq", "-d", database_url, "-c", query],
                          check=True, capture_output=True, text=True).stdout


def committed_ids(database_url: str) -> set:
    return set(psql(database_url,
                    "SELECT request_id::text FROM audit_events WHERE outcome = 'issued'").split())


def percentile_ms(latencies, fraction: float) -> float:
    ordered = sorted(latencies)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000, 1)


def jti_cache_entries(broker: str) -> float:
    """The replay cache's fill, from /metrics."""
    with urllib.request.urlopen(f"{broker}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("ecr_token_broker_jti_cache_entries{"):
                return float(line.rsplit(" ", 1)[1])
    return -1.0


def hostile_rows(database_url: str) -> dict:
    """Rows of each hostile identity and of the junk network, and the aggregate rows."""
    subjects = {
        **{f"stranger {k}": f"repo:evil/x{k}:ref:refs/heads/main" for k in range(STRANGERS)},
        "denied": DENIED_SUBJECT,
        "malformed": MALFORMED_SUBJECT,
    }
    counts = dict(line.split("|") for line in psql(database_url, (
        "SELECT subject, count(*) FROM audit_events WHERE subject IS NOT NULL "
        "GROUP BY subject")).split())
    rows = {name: int(counts.get(subject, 0)) for name, subject in subjects.items()}
    rows["junk network"] = int(psql(database_url, (
        "SELECT count(*) FROM audit_events WHERE shed IS NULL "
        f"AND client_addr <<= '{JUNK_NETWORK}::/64'")))
    aggregates, counted = psql(database_url, (
        "SELECT count(*), coalesce(sum((shed->>'count')::bigint), 0) FROM audit_events "
        "WHERE shed IS NOT NULL")).strip().split("|")
    return {"rows": rows, "aggregate_rows": int(aggregates), "counted_in_aggregates": int(counted)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--broker", required=True)
    p.add_argument("--issuer-port", type=int, required=True)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--seconds", type=int, required=True)
    p.add_argument("--database-url", required=True)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--profile", choices=["mixed", "strangers"], default="mixed")
    args = p.parse_args()

    minter = Minter(args.issuer_port, args.state_dir)
    if args.profile == "strangers":
        return strangers(args, minter)
    plan = scenarios(minter)
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


def strangers(args, minter: Minter) -> int:
    """The strangers profile: see the module's doc."""
    plan = stranger_scenarios(minter)
    results = Results()
    started = time.time()
    deadline = started + args.seconds
    rss = []
    threads = [threading.Thread(target=sample_rss, args=(args.pid, deadline, rss), daemon=True)]
    slow = SlowHeaders(args.broker, 100, deadline)
    threads.append(slow)
    workers = [Worker(args.broker, plan, deadline, results) for _ in range(args.workers)]
    for t in threads + workers:
        t.start()
    for t in threads + workers:
        t.join(args.seconds + 60)
    elapsed = time.time() - started

    real = results.counts["real"]
    committed = committed_ids(args.database_url)
    missing = [i for i in results.issued_ids if i not in committed]
    values = [mb for _, mb in rss if mb >= 0]
    # RSS grows while the caches fill: the replay cache until the first real tokens leave
    # it. Flat means the later half of what follows peaks no higher than the earlier half.
    settled = [mb for t, mb in rss if mb >= 0 and t >= started + JTI_REMEMBERED_SECS + 10]
    half = max(1, len(settled) // 2)
    early, late = max(settled[:half] or values), max(settled[half:] or values)
    hostile = hostile_rows(args.database_url)

    def bound(budget):
        burst, rate = budget
        return int(burst + rate * elapsed) + 1

    limits = {name: bound(UNADMITTED_BUDGET) for name in hostile["rows"]}
    limits["malformed"] = bound(ADMITTED_BUDGET)
    limits["junk network"] = bound(UNAUTHENTICATED_BUDGET)
    over = {n: (r, limits[n]) for n, r in hostile["rows"].items() if r > limits[n]}
    fill = jti_cache_entries(args.broker)
    measured = time.time()
    recent_real = sum(1 for t in results.finished_at["real"]
                      if t >= measured - JTI_REMEMBERED_SECS - 5)
    total = sum(sum(c.values()) for c in results.counts.values())
    sent = {n: sum(c.values()) for n, c in results.counts.items()}
    summary = {
        "profile": "strangers",
        "seconds": round(elapsed),
        "requests": total,
        "requests_per_second": round(total / elapsed),
        "real_callers": {
            "requests": sum(real.values()),
            "answered_200": real[200],
            "p50_ms": percentile_ms(results.latencies_by_name["real"], 0.5),
            "p99_ms": percentile_ms(results.latencies_by_name["real"], 0.99),
        },
        "by_scenario": {n: dict(sorted(c.items())) for n, c in sorted(results.counts.items())},
        "sent_by_scenario": sent,
        "hostile_rows": hostile["rows"],
        "hostile_row_limits": limits,
        "aggregate_rows": hostile["aggregate_rows"],
        "counted_in_aggregates": hostile["counted_in_aggregates"],
        "slow_header_connections_cut": slow.cut,
        "unexpected": results.unexpected,
        "issued_without_row": len(missing),
        "jti_cache_entries": fill,
        "real_requests_within_jti_memory": recent_real,
        "rss_mib": {"start": values[0] if values else -1, "end": values[-1] if values else -1,
                    "settled_first_half_peak": early, "settled_second_half_peak": late,
                    "max": max(values)},
    }
    checks = {
        "every real caller answered 200": real[200] == sum(real.values()) > 0,
        "every answer one its scenario allows, no 5xx": not results.unexpected,
        "every 200 has its audit row": not missing,
        "hostile rows within each budget": not over,
        "RSS flat within 10% once the caches have filled": late <= early * 1.10 and values[-1] > 0,
        # Every real caller's token is used once, whatever its answer, and remembered until
        # it expires; nothing else takes a slot, though strangers minted a fresh `jti` for
        # every request.
        "the replay cache holds only admitted tokens": 0 < fill <= recent_real,
    }
    summary["checks"] = checks
    text = json.dumps(summary, indent=2)
    (args.state_dir / "summary.json").write_text(text + "\n")
    print(text)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
