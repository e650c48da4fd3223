#!/usr/bin/env bash
# Run the test suite the way CI does, installing what a fresh machine lacks.
#   scripts/test.sh full  [pytest args...]   # everything (make test)
#   scripts/test.sh quick [pytest args...]   # no export env, no slow/export tests (make test-quick)
# Stages run in order and are timed; a table of stage -> seconds is printed at the end, also when a
# stage fails. The exit code is pytest's, or that of the first stage that failed.
set -uo pipefail

mode=${1:-full}
case "$mode" in
  full | quick) shift || true ;;
  *) echo "usage: $0 full|quick [pytest args...]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
export INTRASCRIBE_CACHE=${INTRASCRIBE_CACHE:-$HOME/.cache/intrascribe}
MIN_FREE_GB=15
SERVE_PY=.envs/serve/bin/python

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo

stage_names=()
stage_secs=()
stage_results=()
t_start=$(date +%s.%N)

print_table() {
  local total
  total=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  echo
  echo "== test.sh $mode: timing"
  printf '%-10s %9s  %s\n' stage seconds result
  local i
  for i in "${!stage_names[@]}"; do
    printf '%-10s %9s  %s\n' "${stage_names[$i]}" "${stage_secs[$i]}" "${stage_results[$i]}"
  done
  printf '%-10s %9s\n' total "$total"
}

# run_stage NAME FUNCTION: time FUNCTION; on failure print the table and exit with its code.
run_stage() {
  local name=$1 fn=$2 t0 rc secs
  echo
  echo "== stage: $name"
  t0=$(date +%s.%N)
  "$fn"
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  stage_names+=("$name")
  stage_secs+=("$secs")
  if [ "$rc" -eq 0 ]; then
    stage_results+=(ok)
  else
    stage_results+=("FAILED (exit $rc)")
    echo "stage '$name' failed with exit code $rc" >&2
    print_table
    exit "$rc"
  fi
}

stage_system() { scripts/system_deps.sh; }

wait_for() { # wait_for SECONDS COMMAND...: retry COMMAND every 0.5 s until it succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.5
  done
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }

stage_services() {
  command -v pg_isready >/dev/null || { echo "pg_isready not found: install PostgreSQL (postgresql, postgresql-client)" >&2; return 1; }
  command -v redis-cli >/dev/null || { echo "redis-cli not found: install Redis (redis-server, redis-tools)" >&2; return 1; }
  if pg_up; then
    echo "PostgreSQL answers on 127.0.0.1:5432"
  else
    local ver
    ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
    [ -n "$ver" ] || { echo "PostgreSQL is down and no cluster under /etc/postgresql" >&2; return 1; }
    echo "starting PostgreSQL $ver"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || return 1
    wait_for 30 pg_up || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; return 1; }
  fi
  if redis_up; then
    echo "Redis answers on 127.0.0.1:6379"
  else
    echo "starting Redis"
    $SUDO mkdir -p /var/lib/redis /var/log/redis
    $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || return 1
    wait_for 30 redis_up || { echo "Redis did not come up on 127.0.0.1:6379" >&2; return 1; }
  fi
}

# Mirrors how scripts/ensure_env.sh names its cached environments, only to decide whether a build (and
# so the disk space for it) is needed. If the two drift apart, the worst case is a needless space check.
env_built() {
  local name=$1 py hash
  py=${PYTHON:-python3.11}
  command -v "$py" >/dev/null || py=python3
  hash=$({ cat "requirements/$name.txt" scripts/ensure_env.sh; "$py" -c 'import sys; print(sys.version)'; } |
    sha256sum | cut -c1-16)
  [ -f "$INTRASCRIBE_CACHE/envs/$name-$hash/.complete" ]
}

stage_disk() {
  mkdir -p "$INTRASCRIBE_CACHE" || return 1
  local needed=(serve) todo=() name
  [ "$mode" = full ] && needed+=(export)
  for name in "${needed[@]}"; do env_built "$name" || todo+=("$name"); done
  if [ ${#todo[@]} -eq 0 ]; then
    echo "environments already built (${needed[*]}); no space check needed"
    return 0
  fi
  local free_kb free_gb
  free_kb=$(df -Pk "$INTRASCRIBE_CACHE" | awk 'NR == 2 { print $4 }')
  free_gb=$((free_kb * 1024 / 1000000000))
  echo "to build: ${todo[*]}; free space at $INTRASCRIBE_CACHE: ${free_gb} GB (need ${MIN_FREE_GB} GB)"
  if [ "$free_gb" -lt "$MIN_FREE_GB" ]; then
    echo "not enough disk space: building the ${todo[*]} environment(s) needs at least ${MIN_FREE_GB} GB free" \
      "under $INTRASCRIBE_CACHE (INTRASCRIBE_CACHE), only ${free_gb} GB free. Free some space, or point" \
      "INTRASCRIBE_CACHE at a larger disk." >&2
    return 1
  fi
}

stage_env_serve() { scripts/ensure_env.sh serve; }
stage_env_export() { scripts/ensure_env.sh export; }
stage_models() { "$SERVE_PY" -m export_scripts.build dev; }
# The local LLM (llama.cpp compiled once, cached by content hash): tests/api/test_local_llm.py runs it.
stage_env_llm() { scripts/ensure_llm.sh >/dev/null; }

stage_pytest() {
  local rc
  if [ "$mode" = full ]; then
    "$SERVE_PY" -m pytest -q -ra --durations=25 "${pytest_args[@]}"
  else
    "$SERVE_PY" -m pytest -q -ra -m "not slow and not export" "${pytest_args[@]}"
  fi
  rc=$?
  [ "$rc" -eq 5 ] && echo "pytest collected no tests: that counts as a failure" >&2
  return "$rc"
}

pytest_args=("$@")
echo "== test.sh $mode in $root (cache: $INTRASCRIBE_CACHE)"
run_stage system stage_system
run_stage services stage_services
run_stage disk stage_disk
run_stage env-serve stage_env_serve
[ "$mode" = full ] && run_stage env-export stage_env_export
run_stage models stage_models
[ "$mode" = full ] && run_stage env-llm stage_env_llm
run_stage pytest stage_pytest
print_table
exit 0
