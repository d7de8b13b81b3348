#!/usr/bin/env bash
# Load benchmark of the issuing path, reported rather than asserted. Builds the release
# binary, starts PostgreSQL (or uses $DATABASE_URL), moto behind scripts/moto_proxy.py
# (realistic expiries, and a count of every AWS call), a development JWT issuer and the
# service, all on 127.0.0.1, and prints in one run:
#
#   - GET /healthz req/s under wrk: the floor of the same HTTP stack;
#   - GET /v1/whoami under wrk, rotating the JWTs of $CALLERS callers: the token checks and
#     rules of an issuance without its audit row, the bound of what caching can reach;
#   - POST /v1/ecr/authorization-token req/s, p50 and p99 under wrk, rotating the same
#     JWTs, each caller having asked once before (so: cached issuance, every answer with
#     its committed audit row), and its ratio to /healthz; the 200s are checked against
#     the audit rows committed meanwhile, and the audit writer's commits are summed up;
#   - each of those three $ROUNDS times in turn, as median and range, with the service's
#     CPU time per request;
#   - GET /healthz and the cached issuance again against a second service process that
#     serves HTTPS itself ([server.tls], a certificate made for the run; wrk reuses each
#     connection, so this is TLS's cost per request on kept-alive connections), side by
#     side with the plain ones;
#   - upstream (AWS) calls per 10,000 issuances during that run;
#   - a cold burst: $BURST concurrent requests for one new key, and the upstream calls
#     they caused;
#   - the service's peak RSS (VmHWM) after $CACHED_KEYS callers asked once each, before
#     any other load;
#   - one request at a time: `aws ecr get-login-password` on the same moto against the
#     service through curl, each timed as the whole command a user would run.
#
# Everything it starts is stopped on exit, however it exits; logs are kept only when it
# fails. Environment: BENCH_DURATION (seconds per wrk run, default 10), BENCH_ROUNDS
# (rounds of the three runs, default 3), DATABASE_URL.
# Results of a run on the reference machine are in docs/performance.md.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

DURATION="${BENCH_DURATION:-10}"
ROUNDS="${BENCH_ROUNDS:-3}"
THREADS=2
CONNECTIONS=64
CALLERS=100
CACHED_KEYS=10000
BURST=500
SERIAL_RUNS=20
ACCOUNT=123456789012 # moto's default account
BENCH_DB=ecrtb_bench_issue
BENCH_VENV="$REPO/.venv-bench"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ecrtb-bench-issue.XXXXXX")"
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/ecr-token-broker"
# Nothing from the caller's own AWS set-up: dummy keys for moto.
AWS_BENCH_ENV=(env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN
  AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true
  HOME="$WORK/home")

STARTED=() # "pid match" of everything started, stopped in reverse order on exit
PG_STOP=0
DB_CREATED=0

# start NAME MATCH CMD...: start_detached CMD in $WORK, logging to $WORK/NAME.log.
start() {
  local name="$1" match="$2"
  shift 2
  start_detached "$WORK" "$WORK/$name.log" "$@"
  STARTED+=("$DETACHED_PID $match")
}

cleanup() {
  local status=$? i pid match
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    read -r pid match <<<"${STARTED[i]}"
    stop_detached "$pid" "$match" || true
  done
  if [ "$DB_CREATED" = 1 ]; then
    psql -w -X -q -d "$DATABASE_URL" </dev/null \
      -c "drop database if exists $BENCH_DB with (force)" >/dev/null 2>&1 || true
  fi
  if [ "$PG_STOP" = 1 ]; then
    stop_throwaway_postgres || true
  fi
  if [ "$status" -eq 0 ]; then
    rm -rf "$WORK"
  else
    log "failed; logs kept in $WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# upstream_calls: the proxy's count of forwarded AWS calls, as JSON.
upstream_calls() {
  curl -sSf --max-time 5 "http://127.0.0.1:$PROXY_PORT/_proxy/calls"
}

# issued_rows: committed audit rows with outcome `issued`, and how many of them came from
# the cache, as "ISSUED FROM_CACHE".
issued_rows() {
  psql -w -X -Atq -F ' ' -v ON_ERROR_STOP=1 -d "$DB_URL" </dev/null \
    -c "select count(*), count(*) filter (where from_cache) from audit_events where outcome = 'issued'"
}

# settle: wait until the requests still in flight when a load tool stopped have finished
# (the service completes and audits them even when the caller is gone): until neither the
# issued rows nor the upstream calls change for a second, or 60 s have passed.
settle() {
  local last="" now deadline=$(($(date +%s) + 60))
  while now="$(issued_rows) $(upstream_calls)" && [ "$now" != "$last" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { log "still busy after 60 s; reading anyway"; return 0; }
    last="$now"
    sleep 1
  done
}

# cpu_ticks: the measured service's user and system CPU time so far, in clock ticks:
# $MEASURED_PID's, by default the plain service's.
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/${MEASURED_PID:-$BROKER_PID}/stat"
}

# writer_metrics: the audit writer's commits so far, as "COMMITS SECONDS ROWS".
writer_metrics() {
  curl -sSf --max-time 5 "$BROKER/metrics" | awk '
    $1 == "ecr_token_broker_audit_commit_duration_seconds_count" { n = $2 }
    $1 == "ecr_token_broker_audit_commit_duration_seconds_sum" { s = $2 }
    $1 == "ecr_token_broker_audit_batch_rows_sum" { r = $2 }
    END { print n, s, r }'
}

# measured OUT URL [JWT_FILE [GET]]: $CONNECTIONS connections for $DURATION seconds (the
# wrk script's arguments after the URL); the script's summary line goes to OUT.wrk, the
# service's CPU ticks before and after to OUT.cpu.before and OUT.cpu.after.
measured() {
  local out="$1" url="$2" script_args=()
  shift 2
  [ $# -eq 0 ] || script_args=(-- "$@")
  cpu_ticks >"$out.cpu.before"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 30s \
    -s "$REPO/scripts/bench-issue.lua" "$url" "${script_args[@]}" >"$out.full"
  cpu_ticks >"$out.cpu.after"
  grep '^WRK ' "$out.full" >"$out.wrk" || { cat "$out.full" >&2; die "wrk printed no summary"; }
}

mint() {
  "$VENV/bin/python" scripts/dev_issuer.py mint --port "$ISSUER_PORT" --state-dir "$WORK" "$@"
}

# ---------------------------------------------------------------- set-up
ensure_toolchain
ensure_venv
ensure_venv_at "$BENCH_VENV" "$REPO/scripts/requirements-bench.txt"
ensure_apt_packages wrk curl
ensure_postgres
[ "$PG_THROWAWAY_STARTED" = 1 ] && PG_STOP=1

log "cargo build --release"
cargo build --release --locked

DB_URL="$(database_url "$BENCH_DB")"
PGOPTIONS='-c client_min_messages=warning' psql -w -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" \
  </dev/null -c "drop database if exists $BENCH_DB with (force)" -c "create database $BENCH_DB"
DB_CREATED=1

mkdir -p "$WORK/home"
MOTO_PORT="$(free_port)"
start moto moto_server "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT"
wait_for_http "http://127.0.0.1:$MOTO_PORT/moto-api/" 30 "${STARTED[-1]%% *}" || die "moto did not start"

PROXY_PORT="$(free_port)"
start moto-proxy moto_proxy.py python3 "$REPO/scripts/moto_proxy.py" \
  --upstream "http://127.0.0.1:$MOTO_PORT" --port "$PROXY_PORT"
wait_for_http "http://127.0.0.1:$PROXY_PORT/_proxy/calls" 30 "${STARTED[-1]%% *}" ||
  die "the proxy in front of moto did not start"

ISSUER_PORT="$(free_port)"
start issuer dev_issuer.py "$VENV/bin/python" "$REPO/scripts/dev_issuer.py" serve \
  --port "$ISSUER_PORT" --state-dir "$WORK"
wait_for_http "http://127.0.0.1:$ISSUER_PORT/jwks.json" 30 "${STARTED[-1]%% *}" ||
  die "the dev issuer did not start"

BROKER_PORT="$(free_port)"
BROKER="http://127.0.0.1:$BROKER_PORT"
ISSUE_URL="$BROKER/v1/ecr/authorization-token"
cat >"$WORK/config.toml" <<EOF
[server]
listen = "127.0.0.1:$BROKER_PORT"

[database]
url = "$DB_URL"

[audit]
fingerprint_key_id = "bench"
fingerprint_key = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
chain_key = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[[issuers]]
name = "bench"
issuer = "http://127.0.0.1:$ISSUER_PORT"
jwks_uri = "http://127.0.0.1:$ISSUER_PORT/jwks.json"
audiences = ["ecr-token-broker"]
algorithms = ["RS256"]

[[rules]]
name = "bench"
issuer = "bench"
claims = { repository_owner = "acme" }
role_arn = "arn:aws:iam::$ACCOUNT:role/ecr-pull"
regions = ["us-east-1"]
registry_ids = ["$ACCOUNT"]
access = "pull"
repositories = ["{repository}", "{repository}/*"]
session_duration_secs = 3600

# The benchmark measures the service, not its limits: its callers ask far more often than
# a caller should, and moto stands in for AWS's quotas.
[rate_limit]
per_second = 1000000
burst = 1000000

[aws.ecr_ceiling]
max_concurrent = 256
per_second = 100000
max_wait_ms = 5000

[aws.sts_ceiling]
max_concurrent = 256
per_second = 100000
max_wait_ms = 5000
EOF
# As deployed (deploy/k8s/deployment.yaml): JSON logs at info. The database URL in the
# environment would win over the file's: make it the benchmark's database, not the admin one.
BROKER_ENV=("${AWS_BENCH_ENV[@]}" ECR_TOKEN_BROKER_DATABASE_URL="$DB_URL" DATABASE_URL="$DB_URL"
  AWS_ENDPOINT_URL="http://127.0.0.1:$PROXY_PORT"
  AWS_REGION=us-east-1 ECR_TOKEN_BROKER_LOG_FORMAT=json RUST_LOG=info)
"${BROKER_ENV[@]}" "$BIN" check-config "$WORK/config.toml" >/dev/null
"${BROKER_ENV[@]}" "$BIN" --config "$WORK/config.toml" migrate >"$WORK/migrate.log" 2>&1 ||
  { cat "$WORK/migrate.log" >&2; die "migrate failed"; }
start broker ecr-token-broker "${BROKER_ENV[@]}" "$BIN" --config "$WORK/config.toml" serve
BROKER_PID="${STARTED[-1]%% *}"
wait_for_http "$BROKER/readyz" 60 "$BROKER_PID" || die "the service did not become ready"

# The same service again, serving HTTPS itself, on the same database, moto and issuer.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
TLS_PORT="$(free_port)"
TLS_BROKER="https://127.0.0.1:$TLS_PORT"
sed "s/^listen = .*/listen = \"127.0.0.1:$TLS_PORT\"/" "$WORK/config.toml" >"$WORK/config-tls.toml"
printf '\n[server.tls]\ncert_file = "%s"\nkey_file = "%s"\n' "$WORK/tls.crt" "$WORK/tls.key" \
  >>"$WORK/config-tls.toml"
start broker-tls ecr-token-broker "${BROKER_ENV[@]}" "$BIN" --config "$WORK/config-tls.toml" serve
TLS_PID="${STARTED[-1]%% *}"
CURL_CA_BUNDLE="$WORK/tls.crt" wait_for_http "$TLS_BROKER/readyz" 60 "$TLS_PID" ||
  die "the HTTPS service did not become ready"

log "minting $CALLERS + $CACHED_KEYS + 2 callers' JWTs"
mint --count "$CALLERS" --sub 'bench-caller-{n}' >"$WORK/callers.jwt"
mint --count "$CACHED_KEYS" --sub 'bench-key-{n}' >"$WORK/keys.jwt"
burst_jwt="$(mint --sub bench-burst)"
for _ in $(seq "$BURST"); do printf '%s\n' "$burst_jwt"; done >"$WORK/burst.jwt"
(umask 077 && printf 'Authorization: Bearer %s\n' "$(mint --sub bench-serial)" >"$WORK/serial.header")

# ---------------------------------------------------------------- measurements
# First, on a fresh process, so that VmHWM is this phase's peak and nothing else's.
log "$CACHED_KEYS distinct callers, one request each, 64 at a time"
timeout 900 python3 scripts/bench_client.py once --url "$ISSUE_URL" --tokens "$WORK/keys.jwt" \
  --concurrency "$CONNECTIONS" >"$WORK/keys.json"
grep -E '^Vm(HWM|RSS):' "/proc/$BROKER_PID/status" >"$WORK/keys.rss"

# Each caller's first request fetches its credential from AWS; the runs measure what
# callers get all day after that: cached, audited issuance (and any renewal that falls due).
log "$CALLERS callers' first requests, so that the runs below measure cached issuance"
timeout 300 python3 scripts/bench_client.py once --url "$ISSUE_URL" --tokens "$WORK/callers.jwt" \
  --concurrency "$CONNECTIONS" >"$WORK/warm.json"

# Rounds of the three runs side by side, since two runs of one binary on a shared machine
# differ by more than most changes do: the report gives each figure's median and range.
upstream_calls >"$WORK/issue.calls.before"
issued_rows >"$WORK/issue.rows.before"
for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS: GET /healthz, GET /v1/whoami, POST /v1/ecr/authorization-token"
  measured "$WORK/healthz.$round" "$BROKER/healthz"
  measured "$WORK/whoami.$round" "$BROKER/v1/whoami" "$WORK/callers.jwt" GET
  writer_metrics >"$WORK/issue.$round.writer.before"
  measured "$WORK/issue.$round" "$ISSUE_URL" "$WORK/callers.jwt"
  writer_metrics >"$WORK/issue.$round.writer.after"
  settle
done
upstream_calls >"$WORK/issue.calls.after"
issued_rows >"$WORK/issue.rows.after"

log "the HTTPS service: its callers' first requests, then $ROUNDS rounds of GET /healthz and POST"
SSL_CERT_FILE="$WORK/tls.crt" timeout 300 python3 scripts/bench_client.py once \
  --url "$TLS_BROKER/v1/ecr/authorization-token" --tokens "$WORK/callers.jwt" \
  --concurrency "$CONNECTIONS" >"$WORK/tls-warm.json"
settle
issued_rows >"$WORK/tls-issue.rows.before"
for round in $(seq "$ROUNDS"); do
  MEASURED_PID="$TLS_PID" measured "$WORK/tls-healthz.$round" "$TLS_BROKER/healthz"
  MEASURED_PID="$TLS_PID" measured "$WORK/tls-issue.$round" "$TLS_BROKER/v1/ecr/authorization-token" \
    "$WORK/callers.jwt"
  settle
done
issued_rows >"$WORK/tls-issue.rows.after"

log "cold burst: $BURST concurrent requests for one new key"
upstream_calls >"$WORK/burst.calls.before"
timeout 300 python3 scripts/bench_client.py once --url "$ISSUE_URL" --tokens "$WORK/burst.jwt" \
  --concurrency "$BURST" --burst >"$WORK/burst.json"
upstream_calls >"$WORK/burst.calls.after"

log "one request at a time: curl to the service, then aws ecr get-login-password ($SERIAL_RUNS runs each)"
curl_issue=(curl -sSf -o /dev/null -X POST -H "@$WORK/serial.header" "$ISSUE_URL")
"${curl_issue[@]}" # the caller's first request, which a cache would remember
python3 scripts/bench_client.py serial --runs "$SERIAL_RUNS" -- "${curl_issue[@]}" >"$WORK/serial-service.json"
python3 scripts/bench_client.py serial --runs "$SERIAL_RUNS" -- "${AWS_BENCH_ENV[@]}" \
  AWS_ENDPOINT_URL="http://127.0.0.1:$PROXY_PORT" \
  "$BENCH_VENV/bin/aws" ecr get-login-password --region us-east-1 >"$WORK/serial-awscli.json"

# ---------------------------------------------------------------- report
python3 - "$WORK" "$CONNECTIONS" "$DURATION" "$CALLERS" "$CACHED_KEYS" "$BURST" "$ROUNDS" \
  "$(getconf CLK_TCK)" \
  "$(psql -w -X -Atq -d "$DATABASE_URL" </dev/null -c 'show server_version' | cut -d' ' -f1)" <<'EOF'
import json, os, statistics, sys
from pathlib import Path

work = Path(sys.argv[1])
connections, duration, callers, keys, burst, rounds, clk_tck, pg = sys.argv[2:]
rounds, clk_tck = int(rounds), int(clk_tck)


def delta(stem):
    """The numbers in STEM.after less those in STEM.before."""
    before, after = ((work / f"{stem}.{w}").read_text().split() for w in ("before", "after"))
    return [float(a) - float(b) for a, b in zip(after, before)]


def wrk(name):
    fields = (work / f"{name}.wrk").read_text().split()[1:]
    run = {k: float(v) for k, v in (f.split("=") for f in fields)}
    (ticks,) = delta(f"{name}.cpu")
    run["cpu_us"] = ticks * 1e6 / clk_tck / run["requests"]
    return run


def spread(values, fmt):
    median = fmt.format(statistics.median(values))
    return median if len(values) == 1 else f"{median} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def calls(name):
    before = json.loads((work / f"{name}.calls.before").read_text())
    after = json.loads((work / f"{name}.calls.after").read_text())
    return {op: after.get(op, 0) - before.get(op, 0) for op in after if after.get(op, 0) - before.get(op, 0)}


def described(counts):
    return ", ".join(f"{op} {n:,}" for op, n in sorted(counts.items())) or "none"


def statuses(result):
    return ", ".join(f"{n:,}x {s}" for s, n in sorted(result["statuses"].items()))


def summary(runs):
    return (f"{spread([r['rps'] for r in runs], '{:,.0f}')} req/s, "
            f"p50 {spread([r['p50_ms'] for r in runs], '{:.2f}')} ms, "
            f"p99 {spread([r['p99_ms'] for r in runs], '{:.2f}')} ms, "
            f"{spread([r['cpu_us'] for r in runs], '{:.0f}')} µs of service CPU a request"
            + (f"; {sum(r['non2xx'] for r in runs):,.0f} answers not 2xx" if any(r["non2xx"] for r in runs) else ""))


mem_gib = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))) / 2**20
print()
print(f"ecr-token-broker load benchmark: release build, everything on loopback, {os.cpu_count()} CPUs, "
      f"{mem_gib:.0f} GiB, PostgreSQL {pg} over TCP, moto behind the counting proxy")
print(f"wrk: {connections} connections, {duration} s a run, {rounds} rounds of three runs; "
      "each figure is the median of its rounds (lowest-highest)")
print()
rows = []
runs = {name: [wrk(f"{name}.{n}") for n in range(1, rounds + 1)] for name in ("healthz", "whoami", "issue")}
rows.append(("GET /healthz (the HTTP floor)", summary(runs["healthz"])))
rows.append((f"GET /v1/whoami, {callers} callers (token checks and rules, no audit row)",
             summary(runs["whoami"])))
rows.append((f"POST /v1/ecr/authorization-token, {callers} callers", summary(runs["issue"])))
ratios = [i["rps"] / h["rps"] for i, h in zip(runs["issue"], runs["healthz"])]
rows.append(("  ratio to /healthz, round by round", spread(ratios, "{:.3f}")))
ok = int(sum(r["requests"] - r["non2xx"] for r in runs["issue"]))
other = int(sum(r["non2xx"] for r in runs["issue"]))
socket_errors = int(sum(r["socket_errors"] for r in runs["issue"]))
n_commits, commit_seconds, batch_rows = map(
    sum, zip(*(delta(f"issue.{n}.writer") for n in range(1, rounds + 1))))
rows.append(("  audit writer during those runs",
             f"{n_commits:,.0f} commits of {batch_rows / n_commits:.1f} rows on average, "
             f"{1000 * commit_seconds / n_commits:.2f} ms each, committing "
             f"{100 * commit_seconds / (rounds * float(duration)):.0f}% of the time"))
issued, cached = map(int, delta("issue.rows"))
# wrk counts only the answers it read before it stopped; up to one request per connection
# was still in flight, and the service finishes and audits those too.
unseen = issued - ok
check = (f"every 200 has its row; {unseen} more finished after wrk stopped"
         if 0 <= unseen <= int(connections) * rounds
         else f"MISMATCH: more than {connections} rows a run apart")
rows.append(("  answers", f"{ok:,} x 200, {other:,} other, {socket_errors} socket errors"))
rows.append(("  audit rows", f"{issued:,} issued, {cached:,} of them from the cache ({check})"))
tls = {name: [wrk(f"tls-{name}.{n}") for n in range(1, rounds + 1)] for name in ("healthz", "issue")}
rows.append(("GET /healthz over HTTPS (the service's own TLS)", summary(tls["healthz"])))
rows.append((f"POST /v1/ecr/authorization-token over HTTPS, {callers} callers", summary(tls["issue"])))
rows.append(("  HTTPS req/s against plain, round by round",
             "healthz " + spread([t["rps"] / p["rps"] for t, p in zip(tls["healthz"], runs["healthz"])], "{:.3f}")
             + "; issuance " + spread([t["rps"] / p["rps"] for t, p in zip(tls["issue"], runs["issue"])], "{:.3f}")))
tls_ok = int(sum(r["requests"] - r["non2xx"] for r in tls["issue"]))
tls_issued = int(delta("tls-issue.rows")[0])
rows.append(("  answers over HTTPS",
             f"{tls_ok:,} x 200, {int(sum(r['non2xx'] for r in tls['issue'])):,} other; "
             f"{tls_issued:,} issued rows"
             + ("" if 0 <= tls_issued - tls_ok <= int(connections) * rounds else " (MISMATCH)")))
up = calls("issue")
per = sum(up.values()) * 10_000 / issued if issued else float("nan")
rows.append(("upstream calls per 10,000 issuances", f"{per:,.0f} ({described(up)} for {issued:,} issuances)"))
b = json.loads((work / "burst.json").read_text())
rows.append((f"cold burst: {burst} concurrent requests, one new key",
             f"{sum(calls('burst').values()):,} upstream calls ({described(calls('burst'))}); "
             f"{statuses(b)}; p50 {b.get('p50_ms', 0):.0f} ms, max {b.get('max_ms', 0):.0f} ms"))
k = json.loads((work / "keys.json").read_text())
rss = dict(l.split(":") for l in (work / "keys.rss").read_text().splitlines())
mib = {n: int(v.split()[0]) / 1024 for n, v in rss.items()}
rows.append((f"peak RSS after {int(keys):,} distinct callers, once each",
             f"{mib['VmHWM']:.1f} MiB (now {mib['VmRSS']:.1f} MiB); {statuses(k)} in {k['seconds']:.0f} s"))
for name, label in (("serial-awscli", "one at a time: aws ecr get-login-password"),
                    ("serial-service", "one at a time: curl to the service, same caller")):
    s = json.loads((work / f"{name}.json").read_text())
    rows.append((label, f"p50 {s['p50_ms']:.0f} ms, p90 {s['p90_ms']:.0f} ms ({s['runs']} runs, whole command)"))
width = max(len(r[0]) for r in rows)
for label, value in rows:
    print(f"{label:<{width}}  {value}")
EOF
