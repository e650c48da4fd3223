#!/usr/bin/env bash
# `make run`: serve the trained dev fixtures with Triton on 127.0.0.1 (8100 HTTP, 8101 gRPC, 8102
# metrics) and the api on :8000, show working calls from Python (inference_client) and curl, upload a
# synthetic 2-speaker meeting through the batch endpoint and print its speaker-attributed transcript
# and SRT, then keep serving until Ctrl-C.
# The repository served by default is assembled by tests/fixture_models.py under the cache:
# model_repository/ as `make models` built it (vad, the trained ASR fixture) with the trained
# diarization fixture for segmentation/speaker_embedding (model_repository/ holds random small ones,
# whose speakers mean nothing); the api's DIARIZATION_PARAMS_DIR points at its parameters.
#   INTRASCRIBE_MODEL_REPOSITORY=path   serve that repository as it is instead
#   RUN_EXAMPLE_ONLY=1                  stop after the examples instead of serving (used by tests/CI)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PY=$root/.envs/serve/bin/python
repo=${INTRASCRIBE_MODEL_REPOSITORY:-model_repository}
cache=${INTRASCRIBE_CACHE:-$HOME/.cache/intrascribe}

[ -x "$PY" ] || { echo "no serve environment: run \`make env-serve\` (or \`make run\`)" >&2; exit 2; }
# Names and ports come from speechlib/interfaces.py, the one place that defines them.
eval "$("$PY" -c '
from speechlib.interfaces import TRITON_GRPC_PORT, TRITON_HTTP_PORT, TRITON_METRICS_PORT, VAD
print(f"HTTP_PORT={TRITON_HTTP_PORT} GRPC_PORT={TRITON_GRPC_PORT} METRICS_PORT={TRITON_METRICS_PORT}")
print(f"VAD_MODEL={VAD.NAME} VAD_WAVEFORM={VAD.WAVEFORM} VAD_SILENCE={VAD.MAX_END_SILENCE_MS} VAD_SEGMENTS={VAD.SEGMENTS}")
')"
[ -f "$repo/$VAD_MODEL/config.pbtxt" ] || {
  echo "$repo/$VAD_MODEL has no config.pbtxt: build the models first (\`make models\`)" >&2; exit 2; }
if [ -z "${INTRASCRIBE_MODEL_REPOSITORY:-}" ]; then
  repo=$("$PY" -m tests.fixture_models "$cache/run_repository") || exit 2
  export DIARIZATION_PARAMS_DIR=${DIARIZATION_PARAMS_DIR:-$repo/speaker_embedding/1}
  echo "serving the trained fixtures: $repo (ASR: model_repository/asr; diarization: the pyannote_fixture export)"
fi

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
examples=$cache/examples
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

# --- example 4: a meeting through the batch endpoint ----------------------------------------------
# tests/meetings.py's scripted 2-speaker meeting (espeak-ng voices the diarization fixture knows,
# sentences the ASR fixture learned, in a new arrangement; cached), as mp3.
if meeting=$("$PY" -m tests.meetings 2 2>"$work/meeting.err"); then
  echo "=== api: a synthetic 2-speaker meeting ($(basename "$meeting")) through the batch endpoint ==="
  echo "    curl -s -X POST '$API_URL/api/v1/transcriptions/batch?title=Scripted%20meeting' -H 'authorization: Bearer \$TOKEN' -F 'audio_file=@$meeting'"
  status=$(curl -s -o "$work/batch.json" -w '%{http_code}' -X POST \
    "$API_URL/api/v1/transcriptions/batch?title=Scripted%20meeting" -H "authorization: Bearer $token" \
    -F "audio_file=@$meeting;type=audio/mpeg")
  echo "--- output ($status):"
  cat "$work/batch.json"
  echo
  if [ "$status" = 202 ]; then
    read -r job_id session_id < <("$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["job_id"], j["session_id"])' "$work/batch.json")
    echo "=== waiting for the job: curl -s $API_URL/api/v1/jobs/$job_id -H 'authorization: Bearer \$TOKEN' ==="
    job_status=""
    for _ in $(seq 1 600); do
      job_status=$(curl -s "$API_URL/api/v1/jobs/$job_id" -H "authorization: Bearer $token" |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("status",""))')
      case $job_status in completed|failed|cancelled) break ;; esac
      sleep 1
    done
    echo "job $job_id: $job_status"
    if [ "$job_status" = completed ]; then
      echo
      echo "=== the transcript: curl -s $API_URL/api/v1/sessions/$session_id/transcription -H 'authorization: Bearer \$TOKEN' ==="
      curl -s "$API_URL/api/v1/sessions/$session_id/transcription" -H "authorization: Bearer $token" |
        "$PY" -c 'import json, sys
for s in json.load(sys.stdin)["segments"]:
    print("  [%7.2f - %7.2f] %s: %s" % (s["start_time"], s["end_time"], s["speaker"], s["text"]))'
      echo
      echo "=== SRT: curl -s '$API_URL/api/v1/sessions/$session_id/export?format=srt' -H 'authorization: Bearer \$TOKEN' ==="
      curl -s "$API_URL/api/v1/sessions/$session_id/export?format=srt" -H "authorization: Bearer $token"
      echo
    else
      curl -s "$API_URL/api/v1/jobs/$job_id" -H "authorization: Bearer $token"
      echo
      echo "the job did not complete; the api and worker log: $work/api.out" >&2
      [ -n "${RUN_EXAMPLE_ONLY:-}" ] && exit 1
    fi
  elif [ "$status" = 404 ] || [ "$status" = 405 ]; then
    echo "this api has no POST /api/v1/transcriptions/batch yet: the meeting example is skipped"
  else
    echo "the batch upload failed ($status); log: $work/api.out" >&2
    [ -n "${RUN_EXAMPLE_ONLY:-}" ] && exit 1
  fi
else
  echo "no synthetic meeting (tests/meetings.py needs espeak-ng and sox): the batch example is skipped"
  cat "$work/meeting.err" >&2
fi
echo
echo "Metrics: curl -s localhost:$METRICS_PORT/metrics | grep -E 'nv_inference_(exec_)?count|intrascribe_'"
echo "Triton's log: $(sed -n 's/.*log: //p' "$work/launcher.out")"

if [ -n "${RUN_EXAMPLE_ONLY:-}" ]; then
  exit 0
fi
echo
echo "Triton is serving on 127.0.0.1:$HTTP_PORT (HTTP), :$GRPC_PORT (gRPC), :$METRICS_PORT (metrics). Ctrl-C stops it."
wait "$triton_pid"
