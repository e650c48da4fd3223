#!/usr/bin/env bash
# The local default LLM: llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct on loopback
# (config/llm.yaml's `local` entry points here). Builds/reuses the cached environment first.
#   scripts/llm_server.sh            (LLM_PORT, default 8091; LLM_THREADS, default 1; LLM_CTX, default 8192)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=$("$root/scripts/ensure_llm.sh" | tail -n 1)
[ -f "$model" ] || { echo "no GGUF model found in the llm environment" >&2; exit 1; }
exec "$root/.envs/llm/bin/python" -m llama_cpp.server --model "$model" --model_alias SmolLM2-135M-Instruct \
  --host 127.0.0.1 --port "${LLM_PORT:-8091}" --n_threads "${LLM_THREADS:-1}" --n_ctx "${LLM_CTX:-8192}"
