# Intrascribe — `make help` lists the targets. Two commands set everything up on a fresh machine:
#   make run    # build environments + dev models, start Triton (and the api), print an example call
#   make test   # everything CI runs
SHELL := /bin/bash
.DEFAULT_GOAL := help
SERVE_PY := .envs/serve/bin/python
EXPORT_PY := .envs/export/bin/python
export INTRASCRIBE_CACHE ?= $(HOME)/.cache/intrascribe

.PHONY: help system-deps env-serve env-export envs models download-models export-real triton run test test-quick lint

help: ## show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-16s %s\n", $$1, $$2}'

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

run: models ## serve the trained fixtures (Triton + api), show example calls, transcribe a synthetic meeting via the batch endpoint
	@scripts/run.sh

test: ## the whole suite, as CI runs it (installs what a fresh machine lacks, prints a timing table)
	@scripts/test.sh full

test-quick: ## fast tests only: no export environment, no slow end-to-end tests (needs `make models` once)
	@scripts/test.sh quick

lint: env-serve ## ruff
	@$(SERVE_PY) -m ruff check . && $(SERVE_PY) -m ruff format --check .
