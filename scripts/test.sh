#!/usr/bin/env bash
# The test command: formatting, lints, deployment-file checks, then the whole
# cargo test suite against a real PostgreSQL and the moto AWS emulator.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -- --nocapture).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

ensure_toolchain
ensure_venv
ensure_postgres
# One test stops and starts a cluster of its own, so the server programs must be here
# even when DATABASE_URL points elsewhere.
ensure_postgres_server_binaries

# Read by the integration tests: they create their own databases on this server
# and start their own moto servers from $MOTO_SERVER.
export DATABASE_URL PG_BINDIR
export MOTO_SERVER="$VENV/bin/moto_server"
export OPENAPI_SPEC_VALIDATOR="$VENV/bin/openapi-spec-validator"
export PARLIAMENT="$VENV/bin/parliament"
export PYTHON="$VENV/bin/python"

# Test databases (ecrtb_test_*) left behind by interrupted runs.
leftovers="$(psql -w -X -Atq -v ON_ERROR_STOP=1 -d "$DATABASE_URL" </dev/null \
  -c "select datname from pg_database where datname like 'ecrtb\_test\_%'")"
if [ -n "$leftovers" ]; then
  log "dropping $(wc -l <<<"$leftovers") leftover test database(s)"
  while read -r db; do
    psql -w -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" </dev/null \
      -c "drop database if exists \"$db\" with (force)"
  done <<<"$leftovers"
fi

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy"
cargo clippy --all-targets --workspace --locked -- -D warnings

# Deployment files are checked before the tests so that the run ends with
# cargo test's own summary.
if [ -f openapi.yaml ]; then
  log "openapi-spec-validator openapi.yaml"
  "$OPENAPI_SPEC_VALIDATOR" openapi.yaml
fi
if [ -f deploy/Dockerfile ]; then
  log "hadolint deploy/Dockerfile"
  "$VENV/bin/hadolint" --failure-threshold error deploy/Dockerfile
fi
manifests=()
for f in deploy/k8s/*.yaml deploy/k8s/*.yml; do
  # kustomization.yaml is kustomize's build file, not a Kubernetes resource.
  case "$f" in */kustomization.y*ml) continue ;; esac
  [ -f "$f" ] && manifests+=("$f")
done
if [ ${#manifests[@]} -gt 0 ]; then
  # --strict rejects unknown fields; schemas are bundled with the pinned
  # package (its default Kubernetes version), so this works offline. Kinds
  # without a bundled schema (CRDs) only warn.
  log "kubernetes-validate ${manifests[*]}"
  "$VENV/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
fi

# The integration tests drive the client binary (tests/api/client.rs), which is another
# package of the workspace: build it first, so that a filtered run finds it too.
log "cargo build -p ecr-token-broker-client"
cargo build --locked -p ecr-token-broker-client

log "cargo test"
cargo test --locked --workspace "$@"
