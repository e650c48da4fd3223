#!/usr/bin/env bash
# Start the api (127.0.0.1:8000) and its job worker on the embedded defaults: SQLite and a blob
# directory under ./data, huey's SQLite queue, in-process live data, embedded auth (register/login).
# Settings come from the environment and ./.env (see .env.example); anything set there wins.
#   scripts/run_api.sh            # migrate, start both, wait until the api answers, run until Ctrl-C/SIGTERM
#   RUN_API_CHECK=1 scripts/run_api.sh   # start, check /health/live, stop (smoke test)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PY=$root/.envs/serve/bin/python
[ -x "$PY" ] || { echo "no serve environment: run \`make env-serve\`" >&2; exit 2; }

export DATA_DIR=${DATA_DIR:-$root/data}
export API_HOST=${API_HOST:-127.0.0.1}
export API_PORT=${API_PORT:-8000}
# Local development only: /info and /metrics readable without the operator token.
export OPERATOR_ENDPOINTS_PUBLIC=${OPERATOR_ENDPOINTS_PUBLIC:-true}
mkdir -p "$DATA_DIR"

api_pid="" worker_pid=""
cleanup() {
  trap - EXIT INT TERM
  # SIGTERM: the worker hands running jobs back to the queue; uvicorn closes connections.
  for pid in $api_pid $worker_pid; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $api_pid $worker_pid; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 0' INT TERM

"$PY" -m api.db.migrate upgrade
"$PY" -m api.worker &
worker_pid=$!
"$PY" -m api &
api_pid=$!

url="http://$API_HOST:$API_PORT"
for _ in $(seq 1 120); do
  if "$PY" -c "import httpx, sys; sys.exit(httpx.get('$url/health/live', timeout=1).status_code != 200)" 2>/dev/null; then
    break
  fi
  kill -0 "$api_pid" 2>/dev/null || { echo "the api exited during startup" >&2; exit 1; }
  sleep 0.25
done
"$PY" -c "import httpx; httpx.get('$url/health/live', timeout=2).raise_for_status()"
echo "api ready at $url (docs: $url/docs, health: $url/health); worker pid $worker_pid; data in $DATA_DIR"
[ "${RUN_API_CHECK:-}" = 1 ] && exit 0
# Run until either process stops (then stop the other) or we are signalled.
wait -n "$api_pid" "$worker_pid"
echo "api or worker exited; stopping" >&2
exit 1
