#!/usr/bin/env bash
# Exercises the guides in docs/: starts a local stack of its own (scripts/dev.sh on free
# ports, its own state directory and database), runs every snippet of the guides against it
# with scripts/test_docs.py, opens the portal example in headless Chromium, and stops the
# stack again. Run by scripts/test.sh; alone it needs what that installs.
#
#   scripts/test-docs.sh [--keep]    --keep leaves the stack running (stop: the printed line)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

keep=0
[ "${1:-}" = "--keep" ] && keep=1

ensure_venv
ensure_postgres
# The portal test drives a real browser; the guides' commands use curl and jq.
ensure_apt_packages chromium curl jq
ensure_toolchain

state="$(mktemp -d "${TMPDIR:-/tmp}/ecrtb-docs.XXXXXX")"
export ECRTB_DEV_DIR="$state/dev"
export ECRTB_DEV_LISTEN="127.0.0.1:$(free_port)"
export ECRTB_DEV_MOTO_PORT="$(free_port)"
export ECRTB_DEV_ISSUER_PORT="$(free_port)"
export ECRTB_DEV_AWS_PROXY_PORT="$(free_port)"
# ecrtb_test_ prefix: scripts/test.sh drops what an interrupted run leaves behind.
export ECRTB_DEV_DB="ecrtb_test_docs_$$"
# The portal example is served from the first origin, which the broker allows, and from
# the second, which it does not (a different host is a different origin).
portal_port="$(free_port)"
other_port="$(free_port)"
export ECRTB_DEV_CORS_ORIGINS="http://localhost:$portal_port"

stop_stack() {
  local rc=$?
  scripts/dev.sh stop >/dev/null 2>&1 || true
  psql -w -X -q -d "$DATABASE_URL" </dev/null \
    -c "drop database if exists \"$ECRTB_DEV_DB\" with (force)" >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ] && [ -d "$state/dev" ]; then
    log "the local stack's logs: $state/dev/*.log"
  else
    rm -rf "$state"
  fi
  return "$rc"
}

log "starting a local stack for the guides (logs in $state/dev)"
if ! scripts/dev.sh start >"$state/dev-start.log" 2>&1; then
  tail -n 30 "$state/dev-start.log" >&2
  stop_stack
  die "the local stack did not start"
fi
[ "$keep" -eq 1 ] || trap stop_stack EXIT

"$VENV/bin/python" scripts/test_docs.py \
  --broker "http://$ECRTB_DEV_LISTEN" \
  --issuer-port "$ECRTB_DEV_ISSUER_PORT" \
  --issuer-state "$ECRTB_DEV_DIR" \
  --aws-proxy "http://127.0.0.1:$ECRTB_DEV_AWS_PROXY_PORT" \
  --portal-port "$portal_port" \
  --other-port "$other_port" \
  --work "$state/work"

if [ "$keep" -eq 1 ]; then
  log "stack kept: ECRTB_DEV_DIR=$ECRTB_DEV_DIR scripts/dev.sh stop"
fi
