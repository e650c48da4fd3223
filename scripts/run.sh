#!/usr/bin/env bash
# `make run`: serve model_repository/ with Triton on 127.0.0.1 (8100 HTTP, 8101 gRPC, 8102 metrics),
# show a working call from Python (inference_client) and from curl, then keep serving until Ctrl-C.
#   INTRASCRIBE_MODEL_REPOSITORY=path   serve another repository (default: model_repository)
#   RUN_EXAMPLE_ONLY=1                  stop after the examples instead of serving (used by tests/CI)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PY=$root/.envs/serve/bin/python
repo=${INTRASCRIBE_MODEL_REPOSITORY:-model_repository}

[ -x "$PY" ] || { echo "no serve environment: run \`make env-serve\` (or \`make run\`)" >&2; exit 2; }
# Names and ports come from speechlib/interfaces.py, the one place that defines them.
eval "$("$PY" -c '
from speechlib.interfaces import TRITON_GRPC_PORT, TRITON_HTTP_PORT, TRITON_METRICS_PORT, VAD
print(f"HTTP_PORT={TRITON_HTTP_PORT} GRPC_PORT={TRITON_GRPC_PORT} METRICS_PORT={TRITON_METRICS_PORT}")
print(f"VAD_MODEL={VAD.NAME} VAD_WAVEFORM={VAD.WAVEFORM} VAD_SILENCE={VAD.MAX_END_SILENCE_MS} VAD_SEGMENTS={VAD.SEGMENTS}")
')"
[ -f "$repo/$VAD_MODEL/config.pbtxt" ] || {
  echo "$repo/$VAD_MODEL has no config.pbtxt: build the models first (\`make models\`)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/intrascribe-run.XXXXXX")
triton_pid="" api_pid=""
cleanup() {
  trap - EXIT INT TERM
  for pid in $api_pid $triton_pid; do
    kill -TERM "$pid" 2>/dev/null || true  # the launcher stops tritonserver on SIGTERM/SIGINT
  done
  for pid in $api_pid $triton_pid; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "stopping ..."; exit 0' INT TERM

# --- Triton -----------------------------------------------------------------------------------------
: >"$work/launcher.out"
"$PY" -m serving.launcher --model-repository "$repo" >>"$work/launcher.out" 2>&1 &
triton_pid=$!
echo "starting Triton on $repo ..."
until grep -q "tritonserver is ready" "$work/launcher.out"; do
  if ! kill -0 "$triton_pid" 2>/dev/null; then
    echo "Triton did not start:" >&2
    cat "$work/launcher.out" >&2
    exit 1
  fi
  sleep 0.5
done
cat "$work/launcher.out"

# --- api ------------------------------------------------------------------------------------------
# The orchestrator and its job worker on embedded defaults (SQLite + blobs under ./data, huey's SQLite
# queue, in-process live data, embedded auth); scripts/run_api.sh migrates and waits for /health/live.
"$root/scripts/run_api.sh" >"$work/api.out" 2>&1 &
api_pid=$!
API_URL=http://127.0.0.1:${API_PORT:-8000}
for _ in $(seq 1 120); do
  curl -sf "$API_URL/health/live" >/dev/null 2>&1 && break
  if ! kill -0 "$api_pid" 2>/dev/null; then echo "the api did not start:" >&2; cat "$work/api.out" >&2; exit 1; fi
  sleep 0.5
done
echo "api: $API_URL (docs: $API_URL/docs; log: $work/api.out)"

# --- example 1: Python, inference_client --------------------------------------------------------
# Kept in the cache (not the temporary folder) so the printed snippet still works after this script.
examples=${INTRASCRIBE_CACHE:-$HOME/.cache/intrascribe}/examples
mkdir -p "$examples"
clip=$examples/hello.wav
if command -v espeak-ng >/dev/null; then
  espeak-ng -m -v en -s 150 -w "$clip" \
    'Hello, this is Intrascribe. <break time="1200ms"/> Speech goes in, segments come out.'
  what="an espeak-ng clip: two sentences 1.2 s apart"
else
  "$PY" - "$clip" <<'EOF'  # no espeak-ng: tone bursts stand in for speech
import sys, wave
import numpy as np
t = np.arange(48000) / 16000
x = np.where((t % 1.5) < 0.8, 0.3 * np.sin(2 * np.pi * 220 * t), 0.0)
with wave.open(sys.argv[1], "wb") as f:
    f.setnchannels(1); f.setsampwidth(2); f.setframerate(16000)
    f.writeframes((x * 32767).astype("<i2").tobytes())
EOF
  what="tone bursts (install espeak-ng for a speech clip)"
fi

cat >"$work/vad_example.py" <<EOF
import asyncio

from inference_client import TritonClient, VADClient, decode_audio
from speechlib.interfaces import SAMPLE_RATE


async def main():
    waveform = decode_audio("$clip")  # any audio FFmpeg reads -> 16 kHz mono float32
    async with TritonClient("127.0.0.1:$GRPC_PORT") as client:
        segments = await VADClient(client).segments(waveform)
    print(f"{len(waveform) / SAMPLE_RATE:.2f} s of audio, {len(segments)} speech segment(s)")
    for seg in segments:
        print(f"  speech {seg.start:6.2f} s -> {seg.end:6.2f} s")


asyncio.run(main())
EOF
echo
echo "=== Python: $what sent to '$VAD_MODEL' over gRPC ($PY) ==="
sed 's/^/    /' "$work/vad_example.py"
echo "--- output:"
"$PY" "$work/vad_example.py"

# --- example 1b: speech recognition (the dev `asr` is a tiny model trained on a few espeak-ng clips:
# it transcribes those clips exactly and nothing else; real weights: make download-models export-real)
cat >"$work/asr_example.py" <<EOF
import asyncio, json

import numpy as np

from inference_client import ASRClient, TritonClient

clips = np.load("$root/model_repository/asr/1/fixture_clips.npz")
meta = json.loads(str(clips["meta"]))[0]


async def main():
    async with TritonClient("127.0.0.1:$GRPC_PORT") as client:
        t = await ASRClient(client).transcribe(clips[meta["key"]], language="auto")
    print(f"text={t.text!r} language={t.language} emotion={t.emotion} event={t.event}")
    print("tokens:", [(k.text, k.start_ms, k.end_ms) for k in t.tokens])


asyncio.run(main())
EOF
if [ -f "$root/model_repository/asr/1/fixture_clips.npz" ]; then
  echo
  echo "=== Python: a training clip of the dev ASR fixture sent to 'asr' ==="
  sed 's/^/    /' "$work/asr_example.py"
  echo "--- output:"
  "$PY" "$work/asr_example.py"
fi

# --- example 2: curl, KServe v2 JSON over HTTP ------------------------------------------------------
batched=$(curl -s "localhost:$HTTP_PORT/v2/models/$VAD_MODEL/config" |
  "$PY" -c 'import json, sys; print(int(json.load(sys.stdin).get("max_batch_size", 0)) > 0)')
# 16 samples (1 ms) keep the line short; a real request carries the whole 16 kHz waveform.
samples="0,0.01,0.03,0.02,-0.01,-0.03,-0.02,0,0.01,0.03,0.02,-0.01,-0.03,-0.02,0,0.01"
if [ "$batched" = True ]; then wshape="[1,16]" sshape="[1,1]"; else wshape="[16]" sshape="[1]"; fi
body="{\"inputs\":[{\"name\":\"$VAD_WAVEFORM\",\"shape\":$wshape,\"datatype\":\"FP32\",\"data\":[$samples]},"
body+="{\"name\":\"$VAD_SILENCE\",\"shape\":$sshape,\"datatype\":\"INT32\",\"data\":[500]}],"
body+="\"outputs\":[{\"name\":\"$VAD_SEGMENTS\"}]}"
echo
echo "=== curl: the same model over HTTP (KServe v2 JSON; $VAD_SILENCE is optional) ==="
echo "    curl -s localhost:$HTTP_PORT/v2/models/$VAD_MODEL/infer -d '$body'"
echo "--- output:"
curl -s "localhost:$HTTP_PORT/v2/models/$VAD_MODEL/infer" -d "$body"
echo
echo
# --- example 3: the api --------------------------------------------------------------------------
echo
echo "=== api: register, log in, create a session ==="
user="demo-$(date +%s)@example.com"
echo "    curl -s -X POST $API_URL/api/v1/auth/register -H 'content-type: application/json' -d '{\"email\":\"$user\",\"password\":\"a-long-password\"}'"
token=$(curl -s -X POST "$API_URL/api/v1/auth/register" -H 'content-type: application/json' \
  -d "{\"email\":\"$user\",\"password\":\"a-long-password\"}" | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("access_token",""))')
echo "    curl -s -X POST $API_URL/api/v1/sessions/ -H 'authorization: Bearer \$TOKEN' -H 'content-type: application/json' -d '{\"title\":\"My Meeting\",\"language\":\"zh-CN\"}'"
echo "--- output:"
curl -s -X POST "$API_URL/api/v1/sessions/" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"title":"My Meeting","language":"zh-CN"}'
echo
echo "=== api health: curl -s $API_URL/health ==="
curl -s "$API_URL/health"
echo
echo
echo "Metrics: curl -s localhost:$METRICS_PORT/metrics | grep -E 'nv_inference_(exec_)?count|intrascribe_'"
echo "Triton's log: $(sed -n 's/.*log: //p' "$work/launcher.out")"

if [ -n "${RUN_EXAMPLE_ONLY:-}" ]; then
  exit 0
fi
echo
echo "Triton is serving on 127.0.0.1:$HTTP_PORT (HTTP), :$GRPC_PORT (gRPC), :$METRICS_PORT (metrics). Ctrl-C stops it."
wait "$triton_pid"
