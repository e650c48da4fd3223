#!/usr/bin/env bash
# `make init`: write .env for the compose stack (compose.yaml) from .env.example, with fresh secrets
# and the auth mode you choose.
#
#   make init                          # asks for the auth mode (embedded when stdin is not a terminal)
#   AUTH_MODE=supabase SUPABASE_URL=https://PROJECT.supabase.co \
#     DATABASE_URL=postgresql+psycopg://postgres:PASSWORD@db.PROJECT.supabase.co:5432/postgres make init
#   FORCE=1 make init                  # rewrite an existing .env (new secrets: old sessions end)
#
# embedded: accounts live in this stack's Postgres (profile `postgres`); JWT_SECRET is generated.
# supabase: a Supabase project's users and database: SUPABASE_URL, DATABASE_URL and optionally the
#           project's JWT secret (else only JWKS-signed tokens are accepted); no local Postgres.
# Generated either way: POSTGRES_PASSWORD, GRAFANA_ADMIN_PASSWORD, OPERATOR_TOKEN (/metrics, /info),
# LIVEKIT_API_KEY / LIVEKIT_API_SECRET (the pair a self-hosted LiveKit is started with; replace them
# with LiveKit Cloud's). ENV_FILE: where to write (default .env in the repository).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
example="$root/.env.example"
env_file=${ENV_FILE:-$root/.env}

if [ -e "$env_file" ] && [ "${FORCE:-0}" != 1 ]; then
  echo "$env_file exists: kept as it is (FORCE=1 make init writes a new one, with new secrets)"
  exit 0
fi

interactive=0
[ -t 0 ] && interactive=1
ask() { # ask VAR "question" default: a terminal answers, else the environment's value or the default
  local var=$1 question=$2 default=$3 answer=""
  if [ "$interactive" = 1 ]; then
    read -r -p "$question [${!var:-$default}] " answer
  fi
  printf -v "$var" '%s' "${answer:-${!var:-$default}}"
}
secret() { openssl rand -hex "$1"; }

AUTH_MODE=${AUTH_MODE:-}
ask AUTH_MODE "Auth mode: embedded (accounts on this api) or supabase (a Supabase project's users)?" embedded
case "$AUTH_MODE" in
  embedded | supabase) ;;
  *) echo "auth mode must be embedded or supabase, not '$AUTH_MODE'" >&2; exit 2 ;;
esac

declare -A set=(
  [AUTH_MODE]=$AUTH_MODE
  [POSTGRES_PASSWORD]=$(secret 24)
  [GRAFANA_ADMIN_PASSWORD]=$(secret 16)
  [OPERATOR_TOKEN]=$(secret 32)
  [LIVEKIT_API_KEY]=API$(secret 6)
  [LIVEKIT_API_SECRET]=$(secret 32)
)
if [ "$AUTH_MODE" = embedded ]; then
  set[JWT_SECRET]=$(secret 32)
  set[COMPOSE_PROFILES]=postgres,monitoring
else
  SUPABASE_URL=${SUPABASE_URL:-} DATABASE_URL=${DATABASE_URL:-} JWT_SECRET=${JWT_SECRET:-}
  ask SUPABASE_URL "Supabase project URL (https://PROJECT.supabase.co)?" ""
  ask DATABASE_URL "Its Postgres as an SQLAlchemy URL (postgresql+psycopg://postgres:PASSWORD@db.PROJECT.supabase.co:5432/postgres)?" ""
  ask JWT_SECRET "The project's JWT secret (Settings > API; empty: JWKS-signed tokens only)?" ""
  set[SUPABASE_URL]=$SUPABASE_URL
  set[DATABASE_URL]=$DATABASE_URL
  set[JWT_SECRET]=$JWT_SECRET
  set[COMPOSE_PROFILES]=monitoring # no local Postgres
  if [ -z "$SUPABASE_URL" ] || [ -z "$DATABASE_URL" ]; then
    echo "warning: SUPABASE_URL and DATABASE_URL are empty: fill them in $env_file before make up" >&2
  fi
fi

# .env.example line by line, each NAME=... of the table above replaced (values never pass through a
# regular expression or the shell's word splitting)
tmp=$(mktemp "$env_file.XXXXXX")
trap 'rm -f "$tmp"' EXIT
chmod 600 "$tmp"
while IFS= read -r line || [ -n "$line" ]; do
  name=${line%%=*}
  if [ "$name" != "$line" ] && [ -n "${set[$name]+x}" ]; then
    printf '%s=%s\n' "$name" "${set[$name]}"
    unset "set[$name]"
  else
    printf '%s\n' "$line"
  fi
done < "$example" > "$tmp"
if [ "${#set[@]}" != 0 ]; then
  echo "error: .env.example lacks ${!set[*]}" >&2
  exit 1
fi
mv "$tmp" "$env_file"
trap - EXIT
echo "wrote $env_file (auth mode $AUTH_MODE, generated secrets; readable by you only)."
echo "next: review it (LLM keys, LIVEKIT_URL), then: make up && make health"
if [ "$AUTH_MODE" = embedded ]; then
  echo "sign-up is open (ALLOW_REGISTRATION=true) so you can register the first accounts at"
  echo "http://localhost:8000/api/v1/auth/register; then set ALLOW_REGISTRATION=false and make restart-api"
fi
