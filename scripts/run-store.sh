#!/usr/bin/env bash
# Runs the whole store on this machine: Postgres, Redis and the Temporal dev server (started if
# not running), then the worker and the API, built with cargo. Ctrl-C stops the API, the worker
# and whatever this script started; services that were already running stay up.
#
#   EMPORIUM_PROFILE=debug|release   cargo profile (default debug: it shares the build of the tests)
#   EMPORIUM_PORT / EMPORIUM_BIND    where the API listens (default 0.0.0.0:8080)
#   DATABASE_URL, REDIS_URL, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE,
#   EMPORIUM_ADMIN_EMAIL, EMPORIUM_ADMIN_PASSWORD   as the binaries read them (defaults below)
#   EMPORIUM_SEARCH_INDEX_DIR        the search index (default .dev/search-index)
set -euo pipefail

# shellcheck source=scripts/dev-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/dev-env.sh"
cd "$EMPORIUM_ROOT"

profile="${EMPORIUM_PROFILE:-debug}"
case $profile in
  release) cargo_profile=(--release) ;;
  debug) cargo_profile=() ;;
  *) die "EMPORIUM_PROFILE must be release or debug, not '$profile'" ;;
esac

if [ -n "${EMPORIUM_BIND:-}" ]; then
  port="${EMPORIUM_BIND##*:}"
else
  port="${EMPORIUM_PORT:-8080}"
  export EMPORIUM_BIND="0.0.0.0:$port"
fi
api_url="http://127.0.0.1:$port"
# the API's tantivy index (git-ignored); built from Postgres on first start, then kept current
export EMPORIUM_SEARCH_INDEX_DIR="${EMPORIUM_SEARCH_INDEX_DIR:-$DEV_DIR/search-index}"
export EMPORIUM_ADMIN_EMAIL="${EMPORIUM_ADMIN_EMAIL:-admin@emporium.local}"
export EMPORIUM_ADMIN_PASSWORD="${EMPORIUM_ADMIN_PASSWORD:-emporium-admin}"

command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (rustup) first"
command -v curl >/dev/null 2>&1 || apt_install curl

# One store per checkout: refuse before starting anything.
mkdir -p "$DEV_DIR"
pidfile="$DEV_DIR/run-store.pid"
if [ -s "$pidfile" ] && other=$(cat "$pidfile") && [ "$other" != $$ ] &&
  kill -0 "$other" 2>/dev/null && grep -qa run-store "/proc/$other/cmdline" 2>/dev/null; then
  die "scripts/run-store.sh is already running (pid $other)"
fi
if port_open 127.0.0.1 "$port"; then
  if curl -sf -m 5 "$api_url/healthz" >/dev/null 2>&1; then
    die "a store is already running at $api_url; stop it first (or set EMPORIUM_PORT)"
  fi
  die "port $port is taken by another program; free it or set EMPORIUM_PORT"
fi
echo $$ >"$pidfile"

# shellcheck disable=SC2317 # called at exit
remove_pidfile() { [ "$(cat "$pidfile" 2>/dev/null)" != $$ ] || rm -f "$pidfile"; }
at_exit remove_pidfile
install_cleanup_trap

ensure_venv
ensure_postgres
ensure_redis
ensure_temporal
export_store_env

log "building ($profile)"
cargo build "${cargo_profile[@]}" -p emporium-api -p emporium-worker
bin="$EMPORIUM_ROOT/target/$profile"

log "migrating and seeding the database"
"$bin/emporium-api" migrate
"$bin/emporium-api" seed-demo

start_bg worker "$bin/emporium-worker"
worker_pid=$STARTED_PID
start_bg api "$bin/emporium-api" serve
api_pid=$STARTED_PID

deadline=$((SECONDS + 120))
until curl -sf -m 2 "$api_url/healthz" >/dev/null 2>&1; do
  kill -0 "$api_pid" 2>/dev/null || die "the API exited before it was healthy"
  kill -0 "$worker_pid" 2>/dev/null || die "the worker exited before the API was healthy"
  ((SECONDS < deadline)) || die "the API did not answer $api_url/healthz within 120s"
  sleep 0.5
done

cat >&2 <<EOF

  Emporium is running ($profile build)
    API           $api_url
    Swagger UI    $api_url/docs
    OpenAPI       $api_url/openapi.json
    Search        $api_url/products/search?q=wireless+headphones
    Temporal UI   ${TDEV_UI_URL:-(headless)}   namespace $TEMPORAL_NAMESPACE
    Admin login   EMPORIUM_ADMIN_EMAIL=$EMPORIUM_ADMIN_EMAIL
                  EMPORIUM_ADMIN_PASSWORD=$EMPORIUM_ADMIN_PASSWORD
  Ctrl-C stops it.

EOF

# Until Ctrl-C, or until the API or the worker exits on its own (then stop the rest too).
set +e
wait -n "$api_pid" "$worker_pid"
rc=$?
set -e
if ! kill -0 "$api_pid" 2>/dev/null; then who=API; else who=worker; fi
log "the $who exited (status $rc); stopping the rest"
exit $((rc == 0 ? 1 : rc))
