#!/usr/bin/env bash
# The test command: formatting, lints, deployment-file checks, the guides in docs/, then
# the whole cargo test suite against a real PostgreSQL and the moto AWS emulator.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -- --nocapture).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

prepare_test_environment
# One test stops and starts a cluster of its own, so the server programs must be here
# even when DATABASE_URL points elsewhere.
ensure_postgres_server_binaries

# Each test makes a database of its own (ecrtb_test_*) and leaves it behind, and each run
# drops those of the runs before it: some 200 of them, about 11 s in one session, so they go
# in the background while the code is linted and built, and the tests wait for it below.
leftovers="$(psql -w -X -Atq -v ON_ERROR_STOP=1 -d "$DATABASE_URL" </dev/null \
  -c "select datname from pg_database where datname like 'ecrtb\_test\_%'")"
dropping_leftovers=""
if [ -n "$leftovers" ]; then
  log "dropping $(wc -l <<<"$leftovers") test database(s) of earlier runs, meanwhile"
  sed 's/.*/drop database if exists "&" with (force);/' <<<"$leftovers" \
    | psql -w -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" >/dev/null &
  dropping_leftovers=$!
fi

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy"
cargo clippy --all-targets --workspace --locked -- -D warnings

log "scripts/layers.py: modules import only downward"
python3 scripts/layers.py

# Deployment files are checked before the tests so that the run ends with
# cargo test's own summary.
if [ -f openapi.yaml ]; then
  log "openapi-spec-validator openapi.yaml"
  "$OPENAPI_SPEC_VALIDATOR" openapi.yaml
fi
if [ -f deploy/Dockerfile ]; then
  log "hadolint deploy/Dockerfile"
  "$VENV/bin/hadolint" --failure-threshold error deploy/Dockerfile
  # A tag can be moved to other bytes; a digest cannot.
  if unpinned="$(grep -E '^FROM ' deploy/Dockerfile | grep -Ev '@sha256:[0-9a-f]{64}( |$)')"; then
    die "deploy/Dockerfile: base images must be pinned by digest: $unpinned"
  fi
fi
manifests=()
for f in deploy/k8s/*.yaml deploy/k8s/*.yml deploy/kubelet/*.yaml; do
  # kustomization.yaml is kustomize's build file, not a Kubernetes resource; nor is a
  # kubelet's CredentialProviderConfig, whose shape tests/api/client.rs checks instead.
  case "$f" in */kustomization.y*ml | deploy/kubelet/credential-provider-config*) continue ;; esac
  [ -f "$f" ] && manifests+=("$f")
done
if [ ${#manifests[@]} -gt 0 ]; then
  # --strict rejects unknown fields; schemas are bundled with the pinned
  # package (its default Kubernetes version), so this works offline. Kinds
  # without a bundled schema (CRDs) only warn.
  log "kubernetes-validate ${manifests[*]}"
  "$VENV/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
fi

# What kustomize builds from the base and from each overlay: patches that no longer apply,
# or that produce an invalid object, fail here.
for dir in deploy/k8s deploy/overlays/*/; do
  [ -f "${dir%/}/kustomization.yaml" ] || continue
  log "kubectl kustomize ${dir%/} | kubernetes-validate"
  rendered="$(mktemp)"
  "$VENV/bin/kubectl" kustomize "${dir%/}" >"$rendered"
  "$VENV/bin/kubernetes-validate" --strict --quiet "$rendered"
  # The autoscaler owns the replica count and never goes as low as the disruption budget.
  "$VENV/bin/python" - "$rendered" "${dir%/}" <<'EOF'
import sys, yaml
docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
hpa = docs[("HorizontalPodAutoscaler", "ecr-token-broker")]["spec"]
pdb = docs[("PodDisruptionBudget", "ecr-token-broker")]["spec"]
deployment = docs[("Deployment", hpa["scaleTargetRef"]["name"])]["spec"]
problems = []
if "replicas" in deployment:
    problems.append("the Deployment sets replicas, which every apply would reset under the HPA")
if not pdb["minAvailable"] < hpa["minReplicas"] <= hpa["maxReplicas"]:
    problems.append(f"want PDB minAvailable < HPA minReplicas <= maxReplicas, got "
                    f"{pdb['minAvailable']}, {hpa['minReplicas']}, {hpa['maxReplicas']}")
if problems:
    sys.exit(f"{sys.argv[2]}: " + "; ".join(problems))
EOF
  rm -f "$rendered"
done

# IAM documents: permission policies as they are. parliament knows identity policies only,
# so a trust policy (*-trust-policy.json) is linted as the identity policy it amounts to:
# its statements, without their Principal, on a role ARN. That still checks every action
# and whether each condition key applies to it. (deploy/iam/roles.json says which role
# carries which document; it is no policy.)
for f in deploy/iam/*-policy.json; do
  [ -f "$f" ] || continue
  log "parliament $f"
  policy="$(cat "$f")"
  case "$f" in
    *-trust-policy.json)
      policy="$(python3 -c '
import json, sys
doc = json.load(open(sys.argv[1]))
for statement in doc["Statement"]:
    statement.pop("Principal")
    statement["Resource"] = "arn:aws:iam::123456789012:role/trusting-role"
print(json.dumps(doc))' "$f")"
      ;;
  esac
  findings="$("$PARLIAMENT" --string "$policy" --minimum_severity MEDIUM --json)" || true
  # parliament's IAM data (its last release, 1.6.4) predates repository-level permissions for
  # ecr:BatchImportUpstreamImage, which AWS's Service Authorization Reference, and the
  # evaluator below, scope to a repository: a "no resources match" for that action alone is
  # the data's, not the document's, and granting it on "*" would be wider than needed.
  findings="$(python3 -c '
import json, sys
STALE = {"ecr:BatchImportUpstreamImage"}
for line in filter(str.strip, sys.stdin.read().splitlines()):
    finding = json.loads(line)
    detail = finding.get("detail")
    stale = finding["issue"] == "RESOURCE_MISMATCH" and isinstance(detail, list) and detail \
        and all(isinstance(d, dict) and d.get("action") in STALE for d in detail)
    if not stale:
        print(line)' <<<"$findings")"
  if [ -n "$findings" ]; then
    printf '%s\n' "$findings" >&2
    die "parliament found problems in $f"
  fi
done

# Every rule of every example config and guide against the IAM documents, in an IAM policy
# evaluator: the broker's role may assume the rule's role as the service does, and the role's
# policy with the rule's session policy (printed by check-config --assume-role) allows
# exactly what the rule grants (tests/iam/evaluate.mjs).
log "IAM evaluation of the example rules (tests/iam)"
ensure_node_modules "$REPO/tests/iam"
cargo build --locked --bin ecr-token-broker
node tests/iam/evaluate.mjs

# The guides in docs/: every snippet runs against a local stack of its own, and the portal
# example in headless Chromium.
log "scripts/test-docs.sh"
scripts/test-docs.sh

# The integration tests drive the client binary (tests/api/client.rs), which is another
# package of the workspace: build it first, so that a filtered run finds it too.
log "cargo build -p ecr-token-broker-client"
cargo build --locked -p ecr-token-broker-client

if [ -n "$dropping_leftovers" ]; then
  wait "$dropping_leftovers" || die "could not drop the test databases of earlier runs"
fi
log "cargo test"
cargo test --locked --workspace "$@"
