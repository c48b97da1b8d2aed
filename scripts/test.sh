#!/usr/bin/env bash
# Runs every test of the workspace against real services: Postgres, Redis and a Temporal dev
# server are started if they are not running (a dev server started here keeps its state in
# memory) and stopped again at the end. Extra arguments go to the test binaries, e.g.
#   scripts/test.sh checkout_          only tests whose name contains checkout_
#   scripts/test.sh --nocapture
# RUST_TEST_THREADS (default 4) sets how many tests run at once in each test binary.
set -euo pipefail

started_at=$SECONDS
# shellcheck source=scripts/dev-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/dev-env.sh"
cd "$EMPORIUM_ROOT"

# shellcheck disable=SC2317 # called at exit
report_time() { log "took $(((SECONDS - started_at) / 60))m $(((SECONDS - started_at) % 60))s"; }
at_exit report_time
install_cleanup_trap

command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (rustup) first"

# A dev server this script starts needs no disk: set but empty means in memory.
export TEMPORAL_DB_FILENAME="${TEMPORAL_DB_FILENAME-}"

ensure_venv
ensure_postgres
ensure_redis
ensure_temporal
export_store_env # the tests make their own databases on DATABASE_URL's server

# Through the environment rather than --test-threads, so that a test target with its own
# harness (a criterion bench, say) is not handed a flag it does not know.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"

log "cargo test --workspace --locked --no-fail-fast -- $*"
set +e
cargo test --workspace --locked --no-fail-fast -- "$@"
rc=$?
set -e
((rc == 0)) || log "cargo test failed (status $rc)"
exit "$rc"
