#!/usr/bin/env bash
# Cut what the GPU checks (bench/gpu/asr_gpu_check.py, diarization_gpu_check.py) carry to the GPU
# machine, which has no network and no tritonserver: a compressed tritonserver tree from the
# nvidia-pytriton wheel (Python backend, the backend stub for ONE Python version) and the numpy<2
# wheel for that Python (the stub breaks silently on numpy 2, see shared/docs/PLATFORM.md).
#
#   bench/gpu/make_bundle.sh [PYTHON_VERSION] [OUT_DIR]      # defaults: 3.12 .gpu-bundle
#
# Writes OUT_DIR/tritonserver-py<ver>.tar.xz and OUT_DIR/numpy-1.26.4-cp<ver>-...whl, then prints their
# sizes. OUT_DIR is ignored by git (this script adds it to .git/info/exclude): never commit binaries.
# Needs PyPI (pip download; pip's cache makes reruns fast). For the CPU dry run here, build the bundle
# for the local Python too: `bench/gpu/make_bundle.sh 3.11`.
set -euo pipefail

PYVER="${1:-3.12}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${2:-$REPO/.gpu-bundle}"
PYTRITON_VERSION="0.7.0"
NUMPY_VERSION="1.26.4"
PIP=(python3 -m pip)
[ -x "$REPO/.envs/serve/bin/python" ] && PIP=("$REPO/.envs/serve/bin/python" -m pip)
CPTAG="cp${PYVER/./}"

DL="${INTRASCRIBE_CACHE:-$HOME/.cache/intrascribe}/wheels"  # the 55 MB wheel stays out of OUT_DIR
mkdir -p "$OUT" "$DL"
case "$OUT" in
  "$REPO"/*)
    rel="/${OUT#"$REPO"/}/"
    exclude="$REPO/.git/info/exclude"
    for pattern in "$rel" "/gpu-out/"; do  # gpu-out: the checks' default output folder
      if [ -d "$REPO/.git" ] && ! grep -qxF "$pattern" "$exclude" 2>/dev/null; then
        mkdir -p "$(dirname "$exclude")" && echo "$pattern" >>"$exclude"
      fi
    done
    ;;
esac

# 1. the wheels (no dependencies, binary only, for the GPU machine's platform)
"${PIP[@]}" download -q --no-deps --only-binary=:all: --platform manylinux_2_35_x86_64 \
  --python-version "$PYVER" --implementation cp -d "$DL" "nvidia-pytriton==$PYTRITON_VERSION"
"${PIP[@]}" download -q --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --python-version "$PYVER" --implementation cp -d "$OUT" "numpy==$NUMPY_VERSION"
WHEEL="$(ls "$DL"/nvidia_pytriton-"$PYTRITON_VERSION"-*.whl | head -1)"
# kaldi-native-fbank for our `vad` model in transcription_gpu_check.py (installed into the stub's venv)
KNF_VERSION="$(sed -n 's/^kaldi-native-fbank==//p' "$REPO/requirements/serve.txt")"
"${PIP[@]}" download -q --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --python-version "$PYVER" --implementation cp -d "$OUT" \
  "kaldi-native-fbank==$KNF_VERSION"

# 2. the server tree: the wheel's layout (RPATHs are relative), one stub, copied where the Python
#    backend looks for it (backends/python/), without the bundled libpython 3.13 (other stubs only)
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
python3 - "$WHEEL" "$STAGE/tritonserver" "$PYVER" <<'PY'
import shutil, sys, zipfile
from pathlib import Path

wheel, dest, ver = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
stub = f"pytriton/tritonserver/python_backend_stubs/{ver}/triton_python_backend_stub"
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    if stub not in names:
        sys.exit(f"{wheel} has no backend stub for Python {ver}")
    for n in names:
        keep = (n.startswith("pytriton/tritonserver/") and "/python_backend_stubs/" not in n
                and "__pycache__" not in n) or n.startswith("nvidia_pytriton.libs/")
        if not keep or n.endswith("/") or n.startswith("nvidia_pytriton.libs/libpython3"):
            continue
        target = dest / n
        target.parent.mkdir(parents=True, exist_ok=True)
        with z.open(n) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
    target = dest / "pytriton/tritonserver/backends/python/triton_python_backend_stub"
    with z.open(stub) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out)
for p in dest.rglob("*"):
    if p.is_file() and (p.suffix == ".so" or ".so." in p.name or p.name in ("tritonserver", "triton_python_backend_stub")):
        p.chmod(0o755)
(dest / "BUNDLE_INFO").write_text(f"nvidia-pytriton wheel {Path(wheel).name}\npython stub {ver}\n")
PY
tar -C "$STAGE" -cf - tritonserver | xz -T0 -9 >"$OUT/tritonserver-py$PYVER.tar.xz.tmp"
mv "$OUT/tritonserver-py$PYVER.tar.xz.tmp" "$OUT/tritonserver-py$PYVER.tar.xz"

# 3. transcription_gpu_check.py's speech (120 s, made with espeak-ng here), the fsmn-VAD export and the
#    full-size dev pipeline parameters (PLDA): ~6 MB; needs .envs/serve and the build cache
if [ -x "$REPO/.envs/serve/bin/python" ]; then
  (cd "$REPO" && .envs/serve/bin/python bench/gpu/transcription_gpu_check.py --write-bundle "$OUT")
fi

ls -la "$OUT/tritonserver-py$PYVER.tar.xz" "$OUT"/numpy-"$NUMPY_VERSION"-"$CPTAG"-*.whl
du -ch "$OUT/tritonserver-py$PYVER.tar.xz" "$OUT"/*.whl "$OUT"/*.wav "$OUT"/fsmn_vad "$OUT"/pyannote_params 2>/dev/null | tail -1
