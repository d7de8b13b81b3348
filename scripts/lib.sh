# shellcheck shell=bash
# Helpers shared by the scripts in this folder. Source it; it defines
# functions and REPO, and changes no shell options of the caller.
#
# Everything here installs what it needs itself (Debian packages, the Python
# virtualenv, a PostgreSQL server), so the scripts work on a fresh Debian machine
# that has only Rust and Python.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"

# Throwaway PostgreSQL cluster used when no server is reachable.
PG_THROWAWAY_DIR="${TMPDIR:-/tmp}/ecr-token-broker-pg"
PG_THROWAWAY_PORT=54329

# Each line says how many seconds the script has run, so a slow step shows in the log.
log() { printf '==> [%ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root to run: $* (install sudo or run as root)"
  fi
}

_APT_UPDATED=0

# ensure_apt_packages PKG... : install the Debian packages that are missing.
ensure_apt_packages() {
  local pkg missing=()
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
      missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  log "installing Debian packages: ${missing[*]}"
  if [ "$_APT_UPDATED" -eq 0 ]; then
    as_root apt-get update -qq
    _APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_venv: $REPO/.venv with scripts/requirements.txt installed.
ensure_venv() {
  ensure_venv_at "$VENV" "$REPO/scripts/requirements.txt"
}

# ensure_venv_at DIR REQUIREMENTS: a virtualenv in DIR with REQUIREMENTS installed.
# Reinstalls only when the requirements file changed (its hash is kept in a stamp file).
ensure_venv_at() {
  local venv="$1" req="$2"
  local stamp="$venv/.requirements.sha256"
  local want out

  # A venv whose interpreter no longer runs (moved repo, removed Python) is rebuilt.
  if [ -e "$venv" ] && ! "$venv/bin/python" -c '' 2>/dev/null; then
    log "recreating broken virtualenv $venv"
    rm -rf "$venv"
  fi
  if [ ! -e "$venv/bin/python" ]; then
    # Debian's python3 lacks ensurepip until python3-venv is installed; the
    # failed attempt leaves a half-made directory behind.
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      rm -rf "$venv"
      ensure_apt_packages python3-venv
      python3 -m venv "$venv"
    fi
  fi

  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  log "installing Python tools from ${req#"$REPO"/} into ${venv#"$REPO"/} (about a minute)"
  if ! out="$("$venv/bin/pip" install --disable-pip-version-check --no-input -q -r "$req" 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "pip install -r ${req#"$REPO"/} failed"
  fi
  printf '%s\n' "$want" >"$stamp"
}

# ensure_node_modules DIR: DIR/node_modules installed from DIR/package-lock.json with
# `npm ci`, and Node.js with npm from Debian where they are missing. Reinstalls only when the
# lock file changed (its hash is kept in a stamp file), as ensure_venv_at does.
ensure_node_modules() {
  local dir="$1" want out
  local stamp="$dir/node_modules/.package-lock.sha256"
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    ensure_apt_packages nodejs npm
  fi
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  log "installing ${dir#"$REPO"/}/package-lock.json with npm ci"
  if ! out="$(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "npm ci in ${dir#"$REPO"/} failed"
  fi
  printf '%s\n' "$want" >"$stamp"
}

# Is a server at this URL accepting connections? (No authentication involved.)
_pg_ready() {
  pg_isready -q -t 3 -d "$1" >/dev/null 2>&1
}

# Can we log in at this URL without a password prompt?
_pg_login() {
  PGCONNECT_TIMEOUT=3 psql -w -X -Atq -d "$1" -c 'select 1' </dev/null >/dev/null 2>&1
}

# Set PG_BINDIR to the newest Debian PostgreSQL server bin directory; fail if none.
_pg_find_bindir() {
  local initdb
  initdb="$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)"
  [ -x "$initdb" ] || return 1
  PG_BINDIR="$(dirname "$initdb")"
}

# Run a PostgreSQL server binary for the throwaway cluster. initdb and postgres
# refuse to run as root, so as root they run as the `postgres` system user.
_pg_run() {
  local bin="$1"; shift
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$PG_BINDIR/$bin" "$@"
  else
    "$PG_BINDIR/$bin" "$@"
  fi
}

# ensure_postgres_server_binaries: Debian's PostgreSQL server programs (initdb,
# pg_ctl, postgres), installed if missing; exports PG_BINDIR.
ensure_postgres_server_binaries() {
  if ! _pg_find_bindir; then
    # Installing Debian's `postgresql` would also create and start a system
    # cluster on port 5432; this drop-in tells postgresql-common not to.
    if [ ! -d /etc/postgresql ] || [ -z "$(ls -A /etc/postgresql 2>/dev/null)" ]; then
      as_root mkdir -p /etc/postgresql-common/createcluster.d
      printf '# written by ecr-token-broker scripts/lib.sh\ncreate_main_cluster = off\n' |
        as_root tee /etc/postgresql-common/createcluster.d/50-ecr-token-broker.conf >/dev/null
    fi
    ensure_apt_packages postgresql
    _pg_find_bindir || die "no initdb under /usr/lib/postgresql after installing postgresql"
  fi
  export PG_BINDIR
}

# ensure_postgres: find or start a PostgreSQL server and export DATABASE_URL, an
# admin URL whose user can CREATE DATABASE. In order: $DATABASE_URL if
# reachable; a server on 127.0.0.1:5432 we can log in to as `postgres`; else a
# throwaway cluster in $PG_THROWAWAY_DIR on port $PG_THROWAWAY_PORT (reused if
# it exists). Also exports PG_THROWAWAY_STARTED=1 when this call started it.
ensure_postgres() {
  local url
  PG_THROWAWAY_STARTED=0
  export PG_THROWAWAY_STARTED

  if ! command -v pg_isready >/dev/null || ! command -v psql >/dev/null; then
    ensure_apt_packages postgresql-client
  fi

  if [ -n "${DATABASE_URL:-}" ] && _pg_ready "$DATABASE_URL"; then
    log "PostgreSQL: using \$DATABASE_URL ($(_redact_url "$DATABASE_URL"))"
    export DATABASE_URL
    return 0
  fi
  if [ -n "${DATABASE_URL:-}" ]; then
    log "\$DATABASE_URL ($(_redact_url "$DATABASE_URL")) is not reachable; looking for another server"
  fi

  url="postgres://postgres@127.0.0.1:5432/postgres"
  if _pg_ready "$url" && _pg_login "$url"; then
    DATABASE_URL="$url"
    export DATABASE_URL
    log "PostgreSQL: using the local server, $url"
    return 0
  fi

  # --- throwaway cluster ---
  ensure_postgres_server_binaries

  local dir="$PG_THROWAWAY_DIR" data="$PG_THROWAWAY_DIR/data"
  url="postgres://postgres@127.0.0.1:$PG_THROWAWAY_PORT/postgres"

  if [ ! -d "$dir" ]; then
    mkdir -p "$dir"
    chmod 700 "$dir"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres: "$dir"
    fi
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    log "creating a throwaway PostgreSQL cluster in $data"
    _pg_run initdb -D "$data" -U postgres --auth=trust --encoding=UTF8 \
      --locale=C.UTF-8 --no-instructions >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; die "initdb failed (as root, the postgres user must be able to reach $dir)"; }
  fi
  if ! _pg_ready "$url"; then
    # fsync and friends are off: the data is disposable and tests run faster.
    _pg_run pg_ctl -D "$data" -l "$dir/postgres.log" -w -t 60 \
      -o "-p $PG_THROWAWAY_PORT -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null ||
      { tail -n 20 "$dir/postgres.log" >&2 || true; die "could not start the throwaway PostgreSQL cluster"; }
    PG_THROWAWAY_STARTED=1
  fi
  DATABASE_URL="$url"
  export DATABASE_URL
  log "PostgreSQL: using the throwaway cluster in $dir, $url"
}

# database_url NAME: $DATABASE_URL with its database replaced by NAME.
database_url() {
  python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$DATABASE_URL" "$1"
}

# stop_throwaway_postgres [DIR]: stop the throwaway cluster (default
# $PG_THROWAWAY_DIR) if it runs.
stop_throwaway_postgres() {
  local data="${1:-$PG_THROWAWAY_DIR}/data"
  [ -f "$data/postmaster.pid" ] || return 0
  _pg_find_bindir || return 0
  _pg_run pg_ctl -D "$data" -m fast -w stop >/dev/null
}

# ensure_toolchain: rust-toolchain.toml pins the compiler by version. Where that
# version is installed only under the name "stable" and rustup's servers are out of
# reach, rustup would try (and fail) to download it; naming the installed stable
# toolchain by its version is enough.
ensure_toolchain() {
  command -v rustup >/dev/null || return 0
  local want host home stable_version
  want="$(sed -nE 's/^channel *= *"([^"]+)".*/\1/p' "$REPO/rust-toolchain.toml")"
  [ -n "$want" ] || return 0
  host="$(rustc +stable -vV 2>/dev/null | sed -n 's/^host: //p')" || return 0
  home="${RUSTUP_HOME:-$HOME/.rustup}"
  [ -e "$home/toolchains/$want-$host" ] && return 0
  stable_version="$(rustc +stable --version 2>/dev/null | cut -d' ' -f2)"
  if [ "$stable_version" = "$want" ]; then
    log "naming the installed stable toolchain $want, as rust-toolchain.toml asks"
    ln -s "$home/toolchains/stable-$host" "$home/toolchains/$want-$host"
  fi
}

# Print a URL with any password replaced by ***.
_redact_url() {
  printf '%s' "$1" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#'
}

# free_port: print a TCP port on 127.0.0.1 that is free right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_detached DIR LOGFILE CMD...: run CMD in DIR in the background, in a session
# of its own (so stop_detached can end its whole process group, and it survives the
# terminal); sets DETACHED_PID to its pid.
start_detached() {
  local dir="$1" logfile="$2"
  shift 2
  # In a non-interactive shell the child is no process-group leader, so setsid
  # does not fork: $! is the pid of CMD itself.
  (cd "$dir" && exec setsid "$@") >"$logfile" 2>&1 </dev/null &
  DETACHED_PID=$!
}

# stop_detached PID MATCH: stop the process group start_detached began as PID, if PID
# still runs a command line containing MATCH (a recycled pid is left alone): TERM,
# then KILL after five seconds. Returns 1 when there was nothing to stop.
stop_detached() {
  local pid="$1" match="$2" _
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$match" || return 1
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
}

# wait_for_http URL SECONDS [PID]: poll URL until it answers 2xx. Fails after
# SECONDS, or as soon as PID (the server being waited for) has exited.
wait_for_http() {
  local url="$1" timeout="$2" pid="${3:-}" deadline code
  command -v curl >/dev/null || ensure_apt_packages curl
  deadline=$(($(date +%s) + timeout))
  while :; do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
    case "$code" in 2??) return 0 ;; esac
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      log "process $pid exited while waiting for $url"
      return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "timed out after ${timeout}s waiting for $url (last status: ${code:-none})"
      return 1
    fi
    sleep 0.2
  done
}

# write_dev_config DIR LISTEN DATABASE_URL ISSUER_PORT ACCOUNT [CORS_ORIGINS]: write
# DIR/config.toml for a local stack (scripts/dev.sh, scripts/soak.sh): the broker on LISTEN,
# the development issuer (scripts/dev_issuer.py) on ISSUER_PORT, one rule letting acme's
# repositories push to ACCOUNT, browsers allowed from CORS_ORIGINS (space-separated; default
# http://localhost:3000). The audit keys are made once, in DIR/fingerprint-key and
# DIR/chain-key.
write_dev_config() {
  local dir="$1" listen="$2" db_url="$3" issuer_port="$4" account="$5" key origin origins=""
  for origin in ${6:-http://localhost:3000}; do
    origins="${origins:+$origins, }\"$origin\""
  done
  for key in fingerprint-key chain-key; do
    if [ ! -s "$dir/$key" ]; then
      (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' >"$dir/$key")
    fi
  done
  cat >"$dir/config.toml" <<EOF
# Written by write_dev_config (scripts/lib.sh); rewritten on every start.
[server]
listen = "$listen"
cors_allowed_origins = [$origins]
whoami_detail = "full"

[database]
url = "$db_url"

[audit]
fingerprint_key_id = "dev"
fingerprint_key = "$(cat "$dir/fingerprint-key")"
chain_key = "$(cat "$dir/chain-key")"

[[issuers]]
name = "dev"
issuer = "http://127.0.0.1:$issuer_port"
jwks_uri = "http://127.0.0.1:$issuer_port/jwks.json"
audiences = ["ecr-token-broker"]
algorithms = ["RS256"]

[[rules]]
name = "dev-acme"
issuer = "dev"
claims = { repository_owner = "acme" }
role_arn = "arn:aws:iam::$account:role/ecr-push"
regions = ["us-east-1", "eu-west-1"]
registry_ids = ["$account"]
access = "push"
repositories = ["{repository}", "{repository}/*"]
session_duration_secs = 900
session_name = "dev-{actor}"
source_identity = "{actor}"
session_tags = { repository = "{repository}", actor = "{actor}" }
EOF
  chmod 600 "$dir/config.toml"
}

# Everything the test suite needs, installed and started, and the variables it reads
# exported: the tools in the virtualenv and a Postgres admin URL (the integration tests
# create their own databases on that server and start their own moto servers).
prepare_test_environment() {
  ensure_toolchain
  ensure_venv
  ensure_postgres
  export DATABASE_URL PG_BINDIR
  export MOTO_SERVER="$VENV/bin/moto_server"
  export OPENAPI_SPEC_VALIDATOR="$VENV/bin/openapi-spec-validator"
  export PARLIAMENT="$VENV/bin/parliament"
  export SCHEMATHESIS="$VENV/bin/schemathesis"
  export PYTHON="$VENV/bin/python"
}
