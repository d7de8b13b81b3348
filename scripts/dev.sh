#!/usr/bin/env bash
# Runs ecr-token-broker locally with everything it needs around it:
# PostgreSQL, the moto AWS emulator (with example IAM roles) behind a small proxy
# that gives ECR tokens real expiries, a development token issuer, and the
# service itself, all on 127.0.0.1.
#
#   scripts/dev.sh [start]   start, or restart cleanly what a previous run started
#   scripts/dev.sh stop      stop everything this script started
#
# State, pid files and logs live in .dev/. Another stack can run beside it (scripts/test-docs.sh
# starts one) when these name other ports, another directory and another database:
#   ECRTB_DEV_DIR, ECRTB_DEV_LISTEN (127.0.0.1:8080), ECRTB_DEV_MOTO_PORT (5055),
#   ECRTB_DEV_ISSUER_PORT (5056), ECRTB_DEV_AWS_PROXY_PORT (5057), ECRTB_DEV_DB
#   (ecr_token_broker_dev), and ECRTB_DEV_CORS_ORIGINS, the browser origins the broker
#   allows, space-separated (http://localhost:3000).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

DEV="${ECRTB_DEV_DIR:-$REPO/.dev}"
MOTO_PORT="${ECRTB_DEV_MOTO_PORT:-5055}"
ISSUER_PORT="${ECRTB_DEV_ISSUER_PORT:-5056}"
# The service reaches moto through scripts/moto_proxy.py: moto's ECR says every token
# expired in 2015, the proxy says twelve hours from now, as real ECR does.
AWS_PROXY_PORT="${ECRTB_DEV_AWS_PROXY_PORT:-5057}"
BROKER_LISTEN="${ECRTB_DEV_LISTEN:-127.0.0.1:8080}"
DEV_DB="${ECRTB_DEV_DB:-ecr_token_broker_dev}"
CORS_ORIGINS="${ECRTB_DEV_CORS_ORIGINS:-http://localhost:3000}"
ACCOUNT=123456789012 # moto's default account: everything is created there
BROKER_BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/ecr-token-broker"
# AWS settings for everything that talks to moto: dummy keys, and nothing
# inherited from the caller's AWS set-up (a profile or session token would win
# over the keys).
AWS_DEV_ENV=(env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN
  AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev AWS_EC2_METADATA_DISABLED=true)

# start_bg NAME DIR LOGFILE CMD...: start_detached DIR LOGFILE CMD..., with its pid
# recorded in .dev/NAME.pid.
start_bg() {
  local name="$1"
  shift
  start_detached "$@"
  echo "$DETACHED_PID" >"$DEV/$name.pid"
}

# stop_bg NAME MATCH: stop what .dev/NAME.pid names, if that pid still runs a
# command line containing MATCH (a recycled pid is left alone).
stop_bg() {
  local name="$1" match="$2" pidfile="$DEV/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if stop_detached "$pid" "$match"; then
    log "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

stop_services() {
  stop_bg broker ecr-token-broker
  stop_bg issuer dev_issuer.py
  stop_bg moto-proxy moto_proxy.py
  stop_bg moto moto_server
}

port_busy() {
  (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

require_free_port() {
  if port_busy "$1"; then
    die "port $1 on 127.0.0.1 is in use by a process dev.sh did not start ($2 needs it)"
  fi
}

# Fail with the end of a log file.
fail_with_log() {
  tail -n 30 "$2" >&2 || true
  die "$1 (full log: ${2#"$REPO"/})"
}

cmd_stop() {
  stop_services
  if [ -f "$DEV/postgres-throwaway" ]; then
    stop_throwaway_postgres "$(cat "$DEV/postgres-throwaway")"
    rm -f "$DEV/postgres-throwaway"
    log "stopped the throwaway PostgreSQL cluster"
  fi
}

cmd_start() {
  mkdir -p "$DEV/moto"
  chmod 700 "$DEV" # holds a signing key and the fingerprint key
  trap 'if [ $? -ne 0 ]; then log "start failed; anything already started keeps running: scripts/dev.sh stop"; fi' EXIT

  stop_services # from a previous run
  ensure_toolchain
  ensure_venv
  ensure_postgres
  if [ "$PG_THROWAWAY_STARTED" = 1 ]; then
    # Remember it so that `dev.sh stop` stops it, and only then.
    printf '%s\n' "$PG_THROWAWAY_DIR" >"$DEV/postgres-throwaway"
  fi

  # --- database ---
  local db_url
  db_url="$(database_url "$DEV_DB")"
  if [ -z "$(psql -w -X -Atq -v ON_ERROR_STOP=1 -d "$DATABASE_URL" </dev/null \
    -c "select 1 from pg_database where datname = '$DEV_DB'")" ]; then
    psql -w -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" </dev/null -c "create database $DEV_DB"
    log "created database $DEV_DB"
  fi

  # --- moto, with example IAM roles ---
  require_free_port "$MOTO_PORT" moto
  start_bg moto "$DEV/moto" "$DEV/moto.log" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT"
  wait_for_http "http://127.0.0.1:$MOTO_PORT/moto-api/" 30 "$(cat "$DEV/moto.pid")" ||
    fail_with_log "moto did not start" "$DEV/moto.log"
  "${AWS_DEV_ENV[@]}" "$VENV/bin/python" - "http://127.0.0.1:$MOTO_PORT" "$ACCOUNT" <<'EOF'
import json, sys
import boto3

endpoint, account = sys.argv[1], sys.argv[2]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
# The broker assumes these roles with its own credentials (the account root
# in moto); real AWS also needs sts:SetSourceIdentity and sts:TagSession in the
# trust policy because the broker sets a source identity and session tags.
trust = {
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
    }],
}
pull = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
push = pull + ["ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"]
for name, actions in (("ecr-pull", pull), ("ecr-push", push)):
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            # GetAuthorizationToken takes no resource: it must be "*".
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {"Effect": "Allow", "Action": actions,
             "Resource": f"arn:aws:ecr:*:{account}:repository/*"},
        ],
    }
    try:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                        Description="ecr-token-broker development role", MaxSessionDuration=3600)
    except iam.exceptions.EntityAlreadyExistsException:
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName=name, PolicyName=f"{name}-access", PolicyDocument=json.dumps(policy))
EOF
  log "moto on http://127.0.0.1:$MOTO_PORT with roles arn:aws:iam::$ACCOUNT:role/ecr-pull and .../ecr-push"

  require_free_port "$AWS_PROXY_PORT" "the proxy in front of moto"
  start_bg moto-proxy "$REPO" "$DEV/moto-proxy.log" \
    python3 "$REPO/scripts/moto_proxy.py" --upstream "http://127.0.0.1:$MOTO_PORT" --port "$AWS_PROXY_PORT"
  wait_for_http "http://127.0.0.1:$AWS_PROXY_PORT/_proxy/calls" 30 "$(cat "$DEV/moto-proxy.pid")" ||
    fail_with_log "the proxy in front of moto did not start" "$DEV/moto-proxy.log"

  # --- development token issuer ---
  require_free_port "$ISSUER_PORT" "the dev issuer"
  start_bg issuer "$REPO" "$DEV/issuer.log" \
    "$VENV/bin/python" "$REPO/scripts/dev_issuer.py" serve --port "$ISSUER_PORT" --state-dir "$DEV"
  wait_for_http "http://127.0.0.1:$ISSUER_PORT/jwks.json" 30 "$(cat "$DEV/issuer.pid")" ||
    fail_with_log "the dev issuer did not start" "$DEV/issuer.log"

  # --- configuration ---
  write_dev_config "$DEV" "$BROKER_LISTEN" "$db_url" "$ISSUER_PORT" "$ACCOUNT" "$CORS_ORIGINS"

  # --- the service ---
  log "cargo build"
  cargo build --locked
  # The service may take its database URL from the environment too: point it at
  # the development database, not at the admin URL exported above.
  local broker_env=("${AWS_DEV_ENV[@]}" DATABASE_URL="$db_url"
    AWS_ENDPOINT_URL="http://127.0.0.1:$AWS_PROXY_PORT" AWS_REGION=us-east-1
    RUST_LOG="${RUST_LOG:-info}")
  "${broker_env[@]}" "$BROKER_BIN" check-config "$DEV/config.toml"
  "${broker_env[@]}" "$BROKER_BIN" --config "$DEV/config.toml" migrate
  require_free_port "${BROKER_LISTEN##*:}" ecr-token-broker
  start_bg broker "$REPO" "$DEV/broker.log" "${broker_env[@]}" "$BROKER_BIN" --config "$DEV/config.toml" serve
  wait_for_http "http://$BROKER_LISTEN/readyz" 60 "$(cat "$DEV/broker.pid")" ||
    fail_with_log "ecr-token-broker did not become ready" "$DEV/broker.log"

  local jwt
  jwt="$("$VENV/bin/python" scripts/dev_issuer.py mint --port "$ISSUER_PORT" --state-dir "$DEV")"
  cat <<EOF

ecr-token-broker is running on http://$BROKER_LISTEN (moto on :$MOTO_PORT behind a realistic-expiry
proxy on :$AWS_PROXY_PORT, dev issuer on :$ISSUER_PORT, database $DEV_DB).

Get an ECR token (this JWT is valid for an hour):
  curl -sS -X POST http://$BROKER_LISTEN/v1/ecr/authorization-token -H "Authorization: Bearer $jwt"

Push to one repository in two regions, or see what this JWT may ask for:
  curl -sS -X POST http://$BROKER_LISTEN/v1/ecr/authorization-token -H "Authorization: Bearer $jwt" \\
    -d '{"access": "push", "repositories": ["acme/api"], "regions": ["us-east-1", "eu-west-1"]}'
  curl -sS http://$BROKER_LISTEN/v1/whoami -H "Authorization: Bearer $jwt"

Another JWT:  .venv/bin/python scripts/dev_issuer.py mint --port $ISSUER_PORT --state-dir .dev [--claim key=value ...]
Config:       .dev/config.toml
Logs:         .dev/broker.log  .dev/moto.log  .dev/moto-proxy.log  .dev/issuer.log
Stop:         scripts/dev.sh stop
EOF
}

case "${1:-start}" in
  start | restart) cmd_start ;;
  stop) cmd_stop ;;
  *) die "usage: scripts/dev.sh [start|stop]" ;;
esac
