#!/usr/bin/env bash
# Benchmarks, reported rather than asserted: audited inserts per second through the
# group-commit writer against one INSERT per transaction, on the same Postgres in the same
# run, over TCP and over the Unix socket. Results of a run on the reference machine are in
# docs/performance.md.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

ensure_toolchain
ensure_postgres
export DATABASE_URL

log "cargo bench --bench audit_writer (release build)"
# DATABASE_URL picks the server; the benchmark measures it over TCP and over its Unix
# socket (the directory the server reports), so a missing TCP_NODELAY shows as a gap.
cargo bench --locked --bench audit_writer
