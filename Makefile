# Intrascribe — `make help` lists the targets. Two commands set everything up on a fresh machine:
#   make run    # build environments + dev models, start Triton (and the api), print an example call
#   make test   # everything CI runs
SHELL := /bin/bash
.DEFAULT_GOAL := help
SERVE_PY := .envs/serve/bin/python
EXPORT_PY := .envs/export/bin/python
export INTRASCRIBE_CACHE ?= $(HOME)/.cache/intrascribe

.PHONY: help system-deps env-serve env-export envs models download-models export-real triton run test test-quick lint bench
.PHONY: init up down dev logs agent agent-stop agent-scale health stats status

help: ## show this help
	@grep -hE '^[a-zA-Z0-9_%-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {sub("%", "SERVICE", $$1); printf "  make %-16s %s\n", $$1, $$2}'

env-serve: ## serving environment: tritonserver (nvidia-pytriton), onnxruntime, numpy<2, api, tests
	@scripts/ensure_env.sh serve

env-export: ## export environment: torch (CPU), funasr, pyannote.audio 4, onnx; numpy>=2
	@scripts/ensure_env.sh export

envs: env-serve env-export ## both environments

system-deps: ## espeak-ng, sox, ffmpeg via apt-get when missing (the dev fixtures and tests need them)
	@scripts/system_deps.sh

models: system-deps env-serve ## build dev models into model_repository/ (cached by content hash; builds export env on a miss)
	@$(SERVE_PY) -m export_scripts.build dev

download-models: env-export ## download the real models from ModelScope / Hugging Face into models/ (needs network)
	@$(EXPORT_PY) -m export_scripts.download --all

export-real: env-serve ## export the downloaded real models (models/) into model_repository/
	@$(SERVE_PY) -m export_scripts.build real

triton: models ## serve model_repository/ on 127.0.0.1:8100 (HTTP) 8101 (gRPC) 8102 (metrics)
	@$(SERVE_PY) -m serving.launcher

run: models ## start Triton, the api + worker and the local LLM on 127.0.0.1 (real models if exported, else the dev fixtures), run the examples: a meeting transcribed and summarised; Ctrl-C stops all
	@scripts/run.sh

test: ## the whole suite, as CI runs it (installs what a fresh machine lacks, prints a timing table)
	@scripts/test.sh full

test-quick: ## fast tests only: no export environment, no slow end-to-end tests (needs `make models` once)
	@scripts/test.sh quick

bench: env-serve ## side-by-side benchmarks (hours; BENCH_ARGS=--quick: minutes, tiny models), refresh docs/benchmarks.md's targets table
	@$(SERVE_PY) bench/run_all.py $(BENCH_ARGS)

lint: env-serve ## ruff
	@$(SERVE_PY) -m ruff check . && $(SERVE_PY) -m ruff format --check .

# --- production stack: docker compose (compose.yaml; docs/deployment.md) ---------------------------
COMPOSE ?= docker compose
COMPOSE_DEV = $(COMPOSE) -f compose.yaml -f compose.dev.yaml
# every profile's services (postgres, monitoring, agent), whatever COMPOSE_PROFILES starts by default,
# so `down`, `logs`, `status` also reach agents started with `make agent`
COMPOSE_ALL = $(COMPOSE) --profile '*'
# the original README's service names -> ours (STT and diarization both run in Triton)
SERVICE_ALIASES := stt-service=triton diarization-service=triton api-service=api
service = $(or $(patsubst $(1)=%,%,$(filter $(1)=%,$(SERVICE_ALIASES))),$(1))
N ?= 2

init: ## write .env from .env.example: fresh secrets, asks for the auth mode (embedded | supabase)
	@scripts/compose_init.sh

up: ## build the images and start the stack in the background (models, migrations, then the services)
	$(COMPOSE) up -d --build

down: ## stop and remove the stack's containers (volumes: models, database, uploads are kept)
	$(COMPOSE_ALL) down

dev: ## the stack plus a local LiveKit server in dev mode (compose.dev.yaml), rebuilt
	$(COMPOSE_DEV) up -d --build

logs: ## follow every service's logs
	$(COMPOSE_ALL) logs -f --tail=200

logs-%: ## follow one service's logs: make logs-api, logs-stt-service (= triton)
	$(COMPOSE_ALL) logs -f --tail=200 $(call service,$*)

restart-%: ## restart one service: make restart-worker, restart-api-service (= api)
	$(COMPOSE_ALL) restart $(call service,$*)

update-%: ## rebuild one service's image and recreate it: make update-api, update-stt-service (= triton)
	$(COMPOSE) up -d --build --no-deps $(call service,$*)

agent: ## start the LiveKit agents (profile agent; LIVEKIT_* in .env)
	$(COMPOSE) --profile agent up -d agent

agent-stop: ## stop the LiveKit agents
	$(COMPOSE) --profile agent stop agent

agent-scale: ## run N LiveKit agents: make agent-scale N=4
	@[[ "$(N)" =~ ^[0-9]+$$ ]] || { echo "N must be a number of agents, not '$(N)'" >&2; exit 2; }
	$(COMPOSE) --profile agent up -d --no-deps --scale agent=$(N) agent

health: ## each service's state and health check
	$(COMPOSE_ALL) ps --all --format 'table {{.Service}}\t{{.State}}\t{{.Health}}\t{{.Status}}'

stats: ## CPU, memory, network and disk I/O of the stack's containers
	@ids=$$($(COMPOSE_ALL) ps -q); [ -n "$$ids" ] || { echo "the stack is not running (make up)"; exit 0; }; \
	docker stats --no-stream $$ids

status: ## the stack's containers, images and ports
	$(COMPOSE_ALL) ps --all
