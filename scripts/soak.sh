#!/usr/bin/env bash
# Soak test: a release build of ecr-token-broker under minutes of mixed valid, invalid and
# hostile traffic, everything on 127.0.0.1, then checks that no 5xx but documented 503s
# came back, that RSS stayed flat and that every 200 has its committed audit row.
#
#   scripts/soak.sh [SECONDS] [WORKERS] [PROFILE]
#       traffic for SECONDS (default 300) from WORKERS client threads (default 16), of
#       PROFILE (default mixed): `mixed` is valid, invalid and hostile requests of one
#       caller whose rate limit is opened wide; `strangers` is real callers among verified
#       strangers, a denied identity, malformed bodies, junk from a rotating IPv6 /64 and
#       slow-header connections, under the default rate limits (see scripts/soak.py)
#   SOAK_BINARY=path scripts/soak.sh ...  soak that binary instead of a fresh release build
#
# It starts its own moto, development issuer, broker and database (ecrtb_soak_<pid>) on
# free ports and stops and drops them on exit; config, logs and summary.json stay in
# .soak/. Exits 1 when a check fails.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

SECONDS_OF_TRAFFIC="${1:-300}"
WORKERS="${2:-16}"
PROFILE="${3:-mixed}"
case "$PROFILE" in mixed | strangers) ;; *) die "unknown profile $PROFILE (mixed or strangers)" ;; esac
SOAK="$REPO/.soak"
DB="ecrtb_soak_$$"
ACCOUNT=123456789012 # moto's default account
PIDS=()

rm -rf "$SOAK"
mkdir -p "$SOAK/moto"
chmod 700 "$SOAK" # holds a signing key and the audit keys

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "${DATABASE_URL:-}" ]; then
    psql -w -X -q -d "$DATABASE_URL" </dev/null -c "drop database if exists $DB" || true
  fi
}
trap cleanup EXIT

ensure_toolchain
ensure_venv
ensure_postgres
if [ -n "${SOAK_BINARY:-}" ]; then
  BIN="$SOAK_BINARY" # a binary built already, e.g. while changing this script
else
  log "cargo build --release"
  cargo build --release --locked
  BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/ecr-token-broker"
fi

psql -w -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" </dev/null -c "create database $DB"
db_url="$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$DATABASE_URL" "$DB")"
moto_port="$(free_port)"
issuer_port="$(free_port)"
broker_port="$(free_port)"

(cd "$SOAK/moto" && exec "$VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port") >"$SOAK/moto.log" 2>&1 &
PIDS+=($!)
wait_for_http "http://127.0.0.1:$moto_port/moto-api/" 30 "${PIDS[-1]}" || die "moto did not start"
# The broker reaches moto through the proxy that gives ECR tokens real ECR's twelve hours
# (moto's own expiry is in 2015), so that credentials are cached as they would be.
aws_port="$(free_port)"
python3 scripts/moto_proxy.py --upstream "http://127.0.0.1:$moto_port" --port "$aws_port" \
  >"$SOAK/moto-proxy.log" 2>&1 &
PIDS+=($!)
wait_for_http "http://127.0.0.1:$aws_port/_proxy/calls" 30 "${PIDS[-1]}" ||
  die "the proxy in front of moto did not start"
"$VENV/bin/python" scripts/dev_issuer.py serve --port "$issuer_port" --state-dir "$SOAK" >"$SOAK/issuer.log" 2>&1 &
PIDS+=($!)
wait_for_http "http://127.0.0.1:$issuer_port/jwks.json" 30 "${PIDS[-1]}" || die "the issuer did not start"

write_dev_config "$SOAK" "127.0.0.1:$broker_port" "$db_url" "$issuer_port" "$ACCOUNT"
if [ "$PROFILE" = mixed ]; then
  # Every honest scenario speaks for one caller, far more often than a caller should: the
  # per-caller bucket would answer most of them 429. The soak is about the service under
  # mixed traffic, so that bucket is opened wide; failed authentications keep the default
  # per-address bucket, and their 429s are among the answers the hostile scenarios allow.
  cat >>"$SOAK/config.toml" <<'EOF'

[rate_limit]
per_second = 1000000
burst = 1000000
EOF
else
  # The default rate limits; soak.py names the client addresses of its junk (this machine is
  # the trusted proxy), counts the issuer's jtis (remembering what a thousand admitted
  # requests a second for two minutes need), and sends as a denied identity.
  sed -i -e 's/^whoami_detail = "full"$/&\ntrusted_proxies = ["127.0.0.1\/32"]/' \
    -e 's/^algorithms = \["RS256"\]$/&\nreject_replayed_jti = true\njti_cache_capacity = 1000000/' \
    "$SOAK/config.toml"
  cat >>"$SOAK/config.toml" <<'EOF'

[[deny]]
issuer = "dev"
subject = "repo:acme/leaky:*"
reason = "soak: a leaked repository"
EOF
fi

# Nothing from the caller's AWS set-up, and the database from the config file.
broker_env=(env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u DATABASE_URL
  -u ECR_TOKEN_BROKER_DATABASE_URL AWS_ACCESS_KEY_ID=soak AWS_SECRET_ACCESS_KEY=soak
  AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL="http://127.0.0.1:$aws_port"
  AWS_REGION=us-east-1 RUST_LOG=warn)
"${broker_env[@]}" "$BIN" --config "$SOAK/config.toml" migrate
"${broker_env[@]}" "$BIN" --config "$SOAK/config.toml" serve >"$SOAK/broker.log" 2>&1 &
PIDS+=($!)
broker_pid="${PIDS[-1]}"
wait_for_http "http://127.0.0.1:$broker_port/readyz" 60 "$broker_pid" || die "the broker did not become ready"

log "soaking for ${SECONDS_OF_TRAFFIC}s with $WORKERS workers ($PROFILE)"
"$VENV/bin/python" scripts/soak.py --broker "http://127.0.0.1:$broker_port" \
  --issuer-port "$issuer_port" --state-dir "$SOAK" --pid "$broker_pid" \
  --seconds "$SECONDS_OF_TRAFFIC" --workers "$WORKERS" --database-url "$db_url" \
  --profile "$PROFILE"
