#!/usr/bin/env bash
# `make run`: everything on this machine, on loopback, then example calls that work when pasted.
#   1. the serve environment and the models, built when missing (`make env-serve`, `make models`);
#      real models (`make download-models` put them in models/) exported when present, else the dev
#      models, which transcribe nothing but their own synthetic training lines (a loud notice says so)
#   2. tritonserver (HTTP 8100, gRPC 8101, metrics 8102), the api (SQLite + blobs under ./data,
#      embedded auth) with its job worker on :8000 (scripts/run_api.sh), and the local LLM
#      (llama.cpp + SmolLM2 on :8091, scripts/llm_server.sh; its environment is compiled once, ~7 min)
#   3. examples: Python and curl calls to Triton, a login, a synthetic 2-speaker meeting uploaded to
#      the batch endpoint, its transcript and SRT, then a summary of it (`intrascribe summarize`)
#   4. serves until Ctrl-C / SIGTERM, then stops every process it started (each runs in its own
#      process group; the whole group is stopped, SIGKILL after a grace period)
# Environment:
#   INTRASCRIBE_MODEL_REPOSITORY=path  serve that repository as it is
#   RUN_REPOSITORY=path    where the dev fixtures' repository is assembled (default: the cache's run_repository)
#   RUN_EXAMPLE_ONLY=1     stop after the examples instead of serving (tests/CI)
#   RUN_EXAMPLES=0         skip the examples: start everything, print the ready-to-paste block, serve
#   INTRASCRIBE_LLM=off    do not start the local LLM (summaries then use LLM_CONFIG's models, if any)
#   LLM_WAIT_SECONDS=N     how long the summary example waits for the local LLM (default 240)
#   LLM_SERVER_CMD=cmd     serve the local LLM with this command instead of scripts/llm_server.sh
#   RUN_STOP_GRACE_SECONDS=N  how long a stopped service may take before SIGKILL (default 20)
#   RUN_DEMO_EMAIL / RUN_DEMO_PASSWORD  the demo login (demo@example.com / intrascribe-demo)
#   RUN_CONFIG_HOME=dir    where the examples' CLI keeps its login (default: a temporary folder)
#   API_PORT, DATA_DIR, LLM_PORT, TRITON_HTTP_PORT / TRITON_GRPC_PORT / TRITON_METRICS_PORT  ports, data
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PY=$root/.envs/serve/bin/python
cache=${INTRASCRIBE_CACHE:-$HOME/.cache/intrascribe}

say() { printf '%s\n' "$*"; }
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
banner() { printf '\n%s=== %s ===%s\n' "$bold" "$*" "$plain"; }

# --- 1. environment and models ----------------------------------------------------------------------
if [ ! -x "$PY" ]; then
  say "no serve environment yet: building it (make env-serve) ..."
  make -C "$root" --no-print-directory env-serve
fi

# Names and ports come from speechlib/interfaces.py, the one place that defines them.
eval "$("$PY" -c '
from speechlib.interfaces import ASR, TRITON_GRPC_PORT, TRITON_HTTP_PORT, TRITON_METRICS_PORT, VAD
print(f"DEF_HTTP={TRITON_HTTP_PORT} DEF_GRPC={TRITON_GRPC_PORT} DEF_METRICS={TRITON_METRICS_PORT}")
print(f"VAD_MODEL={VAD.NAME} VAD_WAVEFORM={VAD.WAVEFORM} VAD_SILENCE={VAD.MAX_END_SILENCE_MS} VAD_SEGMENTS={VAD.SEGMENTS}")
print(f"ASR_MODEL={ASR.NAME}")
')"
HTTP_PORT=${TRITON_HTTP_PORT:-$DEF_HTTP} GRPC_PORT=${TRITON_GRPC_PORT:-$DEF_GRPC} METRICS_PORT=${TRITON_METRICS_PORT:-$DEF_METRICS}

build_mode() {  # dev | real | "" : how model_repository/<model>/1 was built (export_scripts/build.py)
  "$PY" -c 'import json, sys
try:
    print(json.load(open(sys.argv[1]))["mode"])
except Exception:
    print("")' "model_repository/$1/1/BUILD_INFO.json"
}
repo=${INTRASCRIBE_MODEL_REPOSITORY:-model_repository}
models=dev
if [ -z "${INTRASCRIBE_MODEL_REPOSITORY:-}" ]; then
  if [ -n "$(ls -A models 2>/dev/null)" ] && [ "$(build_mode "$ASR_MODEL")" != real ]; then
    say "real models downloaded in models/: exporting them (make export-real) ..."
    "$PY" -m export_scripts.build real || say "exporting the real models failed (see above): serving the dev models"
  fi
  if [ "$(build_mode "$ASR_MODEL")" = real ]; then
    models=real
  elif [ ! -f "model_repository/$VAD_MODEL/1/BUILD_INFO.json" ] || [ -z "$(build_mode "$ASR_MODEL")" ]; then
    say "no models built yet: building the dev models (make models) ..."
    make -C "$root" --no-print-directory models
  fi
else
  models=given
fi
[ -f "$repo/$VAD_MODEL/config.pbtxt" ] || { say "$repo/$VAD_MODEL has no config.pbtxt: build the models first (\`make models\`)" >&2; exit 2; }
if [ "$models" = dev ]; then
  # The trained fixtures: model_repository/ (vad, the trained ASR fixture) with the trained diarization
  # fixture for segmentation/speaker_embedding (tests/fixture_models.py); its clustering parameters.
  repo=$("$PY" -m tests.fixture_models "${RUN_REPOSITORY:-$cache/run_repository}") || exit 2
  export DIARIZATION_PARAMS_DIR=${DIARIZATION_PARAMS_DIR:-$repo/speaker_embedding/1}
  cat <<'EOF'

  ##########################################################################################
  ##  DEV MODELS. These are tiny models trained here on a few synthetic espeak-ng lines:   ##
  ##  they transcribe those lines and NOTHING ELSE. Transcripts of your own recordings     ##
  ##  are MEANINGLESS (random words, random speakers). For real transcription:            ##
  ##      make download-models export-real      (SenseVoiceSmall, fsmn-VAD, pyannote)     ##
  ##  then `make run` again: it serves the real models once they are exported.            ##
  ##########################################################################################

EOF
  say "serving the trained dev fixtures: $repo"
elif [ "$models" = real ]; then
  say "serving the real models exported into model_repository/ (make export-real)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/intrascribe-run.XXXXXX")
export XDG_CONFIG_HOME=${RUN_CONFIG_HOME:-$work/config}  # the examples' CLI login stays in here
groups=()  # process group ids of what we started (each child leads its own group: setsid)

start() {  # start NAME LOG CMD...: run CMD in a new session/process group; sets $started_pid
  local name=$1 log=$2
  shift 2
  : >"$log"
  setsid "$@" >"$log" 2>&1 </dev/null &
  started_pid=$!
  groups+=("$started_pid")
  say "started $name (pid $started_pid; log: $log)"
}

stop_all() {
  local pgid deadline
  for pgid in "${groups[@]}"; do kill -TERM -- "-$pgid" 2>/dev/null || true; done
  deadline=$((SECONDS + ${RUN_STOP_GRACE_SECONDS:-20}))
  for pgid in "${groups[@]}"; do
    while kill -0 -- "-$pgid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 -- "-$pgid" 2>/dev/null; then
      say "process group $pgid did not stop in time: SIGKILL" >&2
      kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
  done
  for pgid in "${groups[@]}"; do wait "$pgid" 2>/dev/null || true; done
}
cleanup() {
  trap - EXIT INT TERM
  stop_all
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "stopping ..."; exit 0' INT TERM

# --- 2. services ------------------------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$HTTP_PORT" "$GRPC_PORT" "$METRICS_PORT" "${API_PORT:-8000}"; do
  if port_busy "$port"; then
    say "port $port on 127.0.0.1 is taken (another \`make run\`?): stop that, or choose other ports" \
      "(TRITON_HTTP_PORT, TRITON_GRPC_PORT, TRITON_METRICS_PORT, API_PORT)" >&2
    exit 1
  fi
done
start tritonserver "$work/launcher.out" "$PY" -m serving.launcher --model-repository "$repo" \
  --http-port "$HTTP_PORT" --grpc-port "$GRPC_PORT" --metrics-port "$METRICS_PORT"
triton_pid=$started_pid
say "starting Triton on $repo ..."
until grep -q "tritonserver is ready" "$work/launcher.out"; do
  if ! kill -0 "$triton_pid" 2>/dev/null; then
    say "Triton did not start:" >&2
    cat "$work/launcher.out" >&2
    exit 1
  fi
  sleep 0.5
done
cat "$work/launcher.out"

llm_pid="" llm_url="http://127.0.0.1:${LLM_PORT:-8091}/v1" llm_config_given=${LLM_CONFIG:-}
if [ "${INTRASCRIBE_LLM:-on}" != off ]; then
  if curl -s -o /dev/null "$llm_url/models" 2>/dev/null; then
    say "a local LLM already answers at $llm_url: using it"
  else
    # First time: compiles llama.cpp (~7 min on 2 cores); the api serves meanwhile.
    if [ -n "${LLM_PORT:-}" ] && [ -z "${LLM_CONFIG:-}" ]; then
      # config/llm.yaml's `local` model is on the default port: a copy that points at this one
      sed "s#http://127.0.0.1:8091/v1#$llm_url#" config/llm.yaml >"$work/llm.yaml"
      export LLM_CONFIG=$work/llm.yaml
    fi
    start "the local LLM (SmolLM2 on llama.cpp)" "$work/llm.out" bash -c "${LLM_SERVER_CMD:-$root/scripts/llm_server.sh}"
    llm_pid=$started_pid
  fi
fi

# The api and its worker on embedded defaults (SQLite + blobs under ./data, huey's SQLite queue,
# in-process live data, embedded auth); scripts/run_api.sh migrates and waits for /health/live.
export TRITON_GRPC_URL=127.0.0.1:$GRPC_PORT TRITON_HTTP_URL=http://127.0.0.1:$HTTP_PORT
start "the api and its worker" "$work/api.out" "$root/scripts/run_api.sh"
api_pid=$started_pid
API_URL=http://127.0.0.1:${API_PORT:-8000}
until curl -sf "$API_URL/health/live" >/dev/null 2>&1; do
  if ! kill -0 "$api_pid" 2>/dev/null; then say "the api did not start:" >&2; cat "$work/api.out" >&2; exit 1; fi
  sleep 0.5
done
say "api: $API_URL (docs: $API_URL/docs; log: $work/api.out)"

# A login for the examples and for you: the demo account (registered on first use).
user=${RUN_DEMO_EMAIL:-demo@example.com} password=${RUN_DEMO_PASSWORD:-intrascribe-demo}
auth_body="{\"email\":\"$user\",\"password\":\"$password\"}"
token_of() { "$PY" -c 'import json, sys
try:
    print(json.load(sys.stdin).get("access_token", ""))
except ValueError:
    print("")'; }
token=$(curl -s -X POST "$API_URL/api/v1/auth/login" -H 'content-type: application/json' -d "$auth_body" | token_of)
if [ -z "$token" ]; then
  token=$(curl -s -X POST "$API_URL/api/v1/auth/register" -H 'content-type: application/json' -d "$auth_body" | token_of)
fi
[ -n "$token" ] || { say "could not log in or register $user: see $work/api.out" >&2; exit 1; }
export TOKEN=$token  # the printed commands use "$TOKEN", as they will in your shell
CLI=$root/bin/intrascribe

# A short clip for the examples and the ready-to-paste upload (kept in the cache, so the printed
# commands still work after this script).
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

sample_audio=$clip

llm_ready() { curl -s -o /dev/null "$llm_url/models" 2>/dev/null; }  # answers at all

# --- 3. examples ------------------------------------------------------------------------------------
# Each printed command is run as printed (bash -c), so what you paste is what ran here.
show_run() {  # print a command (indented) and run it exactly so
  say "    $1"
  say "--- output:"
  bash -c "$1"
  echo
}

examples() {
  local examples=$cache/examples
  cat >"$examples/vad_example.py" <<EOF
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
  banner "Python: $what sent to '$VAD_MODEL' over gRPC"
  sed 's/^/    /' "$examples/vad_example.py"
  show_run "$PY $examples/vad_example.py"

  # Speech recognition on a training clip of the dev ASR fixture (it transcribes those clips exactly
  # and nothing else; real weights: make download-models export-real).
  if [ "$models" = dev ] && [ -f "$root/model_repository/$ASR_MODEL/1/fixture_clips.npz" ]; then
    cat >"$examples/asr_example.py" <<EOF
import asyncio, json

import numpy as np

from inference_client import ASRClient, TritonClient

clips = np.load("$root/model_repository/$ASR_MODEL/1/fixture_clips.npz")
meta = json.loads(str(clips["meta"]))[0]


async def main():
    async with TritonClient("127.0.0.1:$GRPC_PORT") as client:
        t = await ASRClient(client).transcribe(clips[meta["key"]], language="auto")
    print(f"text={t.text!r} language={t.language} emotion={t.emotion} event={t.event}")
    print("tokens:", [(k.text, k.start_ms, k.end_ms) for k in t.tokens])


asyncio.run(main())
EOF
    banner "Python: a training clip of the dev ASR fixture sent to '$ASR_MODEL'"
    sed 's/^/    /' "$examples/asr_example.py"
    show_run "$PY $examples/asr_example.py"
  fi

  # curl, KServe v2 JSON over HTTP: 16 samples (1 ms) keep the line short; a real request carries the
  # whole 16 kHz waveform.
  local batched samples wshape sshape body
  batched=$(curl -s "127.0.0.1:$HTTP_PORT/v2/models/$VAD_MODEL/config" |
    "$PY" -c 'import json, sys; print(int(json.load(sys.stdin).get("max_batch_size", 0)) > 0)')
  samples="0,0.01,0.03,0.02,-0.01,-0.03,-0.02,0,0.01,0.03,0.02,-0.01,-0.03,-0.02,0,0.01"
  if [ "$batched" = True ]; then wshape="[1,16]" sshape="[1,1]"; else wshape="[16]" sshape="[1]"; fi
  body="{\"inputs\":[{\"name\":\"$VAD_WAVEFORM\",\"shape\":$wshape,\"datatype\":\"FP32\",\"data\":[$samples]},"
  body+="{\"name\":\"$VAD_SILENCE\",\"shape\":$sshape,\"datatype\":\"INT32\",\"data\":[500]}],"
  body+="\"outputs\":[{\"name\":\"$VAD_SEGMENTS\"}]}"
  banner "curl: the same model over HTTP (KServe v2 JSON; $VAD_SILENCE is optional)"
  show_run "curl -s http://127.0.0.1:$HTTP_PORT/v2/models/$VAD_MODEL/infer -d '$body'"

  banner "api: log in (the demo account), create a session"
  show_run "curl -s -X POST $API_URL/api/v1/auth/login -H 'content-type: application/json' -d '$auth_body'"
  show_run "curl -s -X POST $API_URL/api/v1/sessions/ -H \"authorization: Bearer \$TOKEN\" -H 'content-type: application/json' -d '{\"title\":\"My Meeting\",\"language\":\"zh\"}'"
  banner "api health"
  show_run "curl -s $API_URL/health"

  # The product's main job: tests/meetings.py's scripted 2-speaker meeting (espeak-ng voices the
  # diarization fixture knows, sentences the ASR fixture learned, in a new arrangement; cached), as mp3.
  local meeting status job_id session_id job_status
  if ! meeting=$("$PY" -m tests.meetings 2 2>"$work/meeting.err"); then
    say "no synthetic meeting (tests/meetings.py needs espeak-ng and sox): the batch example is skipped"
    cat "$work/meeting.err" >&2
    return 0
  fi
  sample_audio=$meeting
  banner "api: a synthetic 2-speaker meeting ($(basename "$meeting")) through the batch endpoint"
  local upload="curl -s -X POST '$API_URL/api/v1/transcriptions/batch?title=Scripted%20meeting' -H \"authorization: Bearer \$TOKEN\" -F 'audio_file=@$meeting;type=audio/mpeg'"
  say "    $upload"
  bash -c "$upload" >"$work/batch.json"
  say "--- output:"
  cat "$work/batch.json"
  echo
  if ! read -r job_id session_id < <("$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["job_id"], j["session_id"])' "$work/batch.json" 2>/dev/null); then
    say "the batch upload failed; log: $work/api.out" >&2
    return 1
  fi
  banner "waiting for the job (its events: curl -sN $API_URL/api/v1/jobs/$job_id/events -H \"authorization: Bearer \$TOKEN\")"
  say "    curl -s $API_URL/api/v1/jobs/$job_id -H \"authorization: Bearer \$TOKEN\""
  job_status=""
  for _ in $(seq 1 600); do
    job_status=$(curl -s "$API_URL/api/v1/jobs/$job_id" -H "authorization: Bearer $TOKEN" |
      "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("status",""))')
    case $job_status in completed | failed | cancelled) break ;; esac
    sleep 1
  done
  say "job $job_id: $job_status"
  if [ "$job_status" != completed ]; then
    curl -s "$API_URL/api/v1/jobs/$job_id" -H "authorization: Bearer $TOKEN"
    echo
    say "the job did not complete; the api and worker log: $work/api.out" >&2
    return 1
  fi
  banner "the transcript"
  say "    curl -s $API_URL/api/v1/sessions/$session_id/transcription -H \"authorization: Bearer \$TOKEN\""
  say "--- output (segments):"
  curl -s "$API_URL/api/v1/sessions/$session_id/transcription" -H "authorization: Bearer $TOKEN" |
    "$PY" -c 'import json, sys
for s in json.load(sys.stdin)["segments"]:
    print("  [%7.2f - %7.2f] %s: %s" % (s["start_time"], s["end_time"], s["speaker"], s["text"]))'
  banner "SRT"
  show_run "curl -s '$API_URL/api/v1/sessions/$session_id/export?format=srt' -H \"authorization: Bearer \$TOKEN\""

  # A summary of the meeting by the LLM, through the CLI (POST /api/v1/sessions/{id}/summary, then
  # the job's event stream; the same call with curl is printed too).
  banner "summary (LLM)"
  if [ -n "$llm_pid" ]; then
    local waited=0
    say "waiting for the local LLM at $llm_url (up to ${LLM_WAIT_SECONDS:-240} s; log: $work/llm.out) ..."
    until llm_ready || [ "$waited" -ge "${LLM_WAIT_SECONDS:-240}" ] || ! kill -0 "$llm_pid" 2>/dev/null; do
      sleep 2
      waited=$((waited + 2))
    done
  fi
  if llm_ready || [ -n "$llm_config_given" ]; then
    say "    curl -s -X POST $API_URL/api/v1/sessions/$session_id/summary -H \"authorization: Bearer \$TOKEN\""
    say "  or, with the CLI (its progress bar follows the job's event stream):"
    "$CLI" --url "$API_URL" login --email "$user" --password "$password" 2>/dev/null
    show_run "$CLI summarize $session_id" || say "the summary failed (above); log: $work/api.out" >&2
  elif [ -n "$llm_pid" ] && kill -0 "$llm_pid" 2>/dev/null; then
    say "the local LLM is not up yet (its environment compiles llama.cpp once, ~7 min; log: $work/llm.out)."
    say "Once it answers at $llm_url:  $CLI summarize $session_id"
  else
    say "no LLM running (INTRASCRIBE_LLM=off, or it failed: $work/llm.out): the summary example is skipped"
  fi
  summary_session=$session_id
}

summary_session=""
examples_rc=0
if [ "${RUN_EXAMPLES:-1}" != 0 ]; then
  examples || examples_rc=$?
fi

# --- 4. ready ---------------------------------------------------------------------------------------
banner "ready: paste these into another terminal"
cat <<EOF
    export TOKEN=$TOKEN
    export INTRASCRIBE_URL=$API_URL
    curl -s $API_URL/api/v1/sessions/ -H "authorization: Bearer \$TOKEN"
EOF
say "    curl -s -X POST '$API_URL/api/v1/transcriptions/batch?title=My%20meeting' -H \"authorization: Bearer \$TOKEN\" -F 'audio_file=@$sample_audio'"
say
say "  The CLI (also .envs/serve/bin/intrascribe): log in once, then transcribe any recording:"
say "    $CLI login --email $user --password $password"
say "    $CLI transcribe $sample_audio --format srt     # any recording: m4a, mp3, wav, ..."
[ -n "$summary_session" ] && say "    $CLI summarize $summary_session"
say
say "  api docs: $API_URL/docs    login: $user / $password    data: ${DATA_DIR:-$root/data}"
say "  Triton: 127.0.0.1:$HTTP_PORT (HTTP), :$GRPC_PORT (gRPC), :$METRICS_PORT (metrics: curl -s 127.0.0.1:$METRICS_PORT/metrics)"
say "  LLM: $llm_url $( [ -n "$llm_pid" ] && echo "(log: $work/llm.out)" || echo "(not started here)")"
[ "$models" = dev ] && say "  models: DEV fixtures: transcripts of your own audio are meaningless (make download-models export-real)"

if [ -n "${RUN_EXAMPLE_ONLY:-}" ]; then
  exit "$examples_rc"
fi
say
say "serving; Ctrl-C stops everything started here."
# Until a service dies (then stop the rest) or we are signalled.
while :; do
  for pgid in "$triton_pid" "$api_pid"; do
    if ! kill -0 "$pgid" 2>/dev/null; then
      say "a service stopped (pid $pgid): stopping the rest" >&2
      exit 1
    fi
  done
  # in the background + `wait`: bash runs the INT/TERM trap at once while in `wait`, whereas a signal
  # that arrives during a foreground command is acted on (or not) only when that command ends
  sleep 1 &
  wait $! 2>/dev/null || true
done
