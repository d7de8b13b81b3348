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
# DATABASE_URL picks the server and the path to it; a Unix socket URL such as
# postgres://postgres@%2Fvar%2Frun%2Fpostgresql/postgres avoids TCP delayed-ACK stalls.
cargo bench --locked --bench audit_writer
