#!/usr/bin/env bash
# The long random fuzz run: schemathesis against the live service, as the test command's
# `openapi::schemathesis_finds_no_server_error_and_no_undocumented_response` runs it (the
# same service, token, deny-list and audit admin rights, and checks), but for minutes and
# with a random seed instead of the test command's fixed one. Run it before resolving a
# change that touches the HTTP edge; a failure prints its seed, and
# `SCHEMATHESIS_SEED=SEED scripts/fuzz.sh` runs the same cases again.
#
#   scripts/fuzz.sh [SECONDS]   fuzz for SECONDS (default 600)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

prepare_test_environment
export SCHEMATHESIS_MAX_TIME="${1:-600}"
export SCHEMATHESIS_SEED="${SCHEMATHESIS_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"

log "schemathesis for ${SCHEMATHESIS_MAX_TIME} s with seed $SCHEMATHESIS_SEED"
cargo test --locked --test api \
  openapi::schemathesis_finds_no_server_error_and_no_undocumented_response \
  -- --exact --nocapture
