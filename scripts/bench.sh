#!/usr/bin/env bash
# Runs one benchmark (or all with no argument) against real services, started as for the tests.
#   scripts/bench.sh cart
# Benchmarks print their figures and the ratio to the simpler design they are compared with.
set -euo pipefail
# shellcheck source=scripts/dev-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/dev-env.sh"
cd "$EMPORIUM_ROOT"
install_cleanup_trap
export TEMPORAL_DB_FILENAME="${TEMPORAL_DB_FILENAME-}"
ensure_venv
ensure_postgres
ensure_redis
ensure_temporal
export_store_env
if [ $# -gt 0 ]; then
  cargo bench --locked --bench "$1" -- "${@:2}"
else
  cargo bench --locked --benches
fi
