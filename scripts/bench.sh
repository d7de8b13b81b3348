#!/usr/bin/env bash
# Benchmarks, reported rather than asserted: audited inserts per second through the
# group-commit writer against one INSERT per transaction, on the same Postgres in the same
# run. Results of a run on the reference machine are in README.md, "Performance".
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

ensure_toolchain
ensure_postgres
export DATABASE_URL

log "cargo bench --bench audit_writer (release build)"
cargo bench --locked --bench audit_writer
