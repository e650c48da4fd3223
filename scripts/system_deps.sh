#!/usr/bin/env bash
# Install the system tools the dev models and tests need when they are missing: espeak-ng (synthetic
# speech for the trained fixtures and tests), sox (mixing the synthetic meetings), ffmpeg (the export
# environment's pyannote.audio imports torchcodec, which loads FFmpeg's libraries; the project itself
# decodes audio with PyAV, whose wheel bundles FFmpeg), prometheus (tests/test_dashboards.py evaluates
# the Grafana dashboards' queries on a real Prometheus). Debian/Ubuntu (apt-get).
set -uo pipefail
missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v prometheus >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -eq 0 ]; then
  echo "espeak-ng, sox, ffmpeg and prometheus are installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "missing: ${missing[*]}; installing espeak-ng sox ffmpeg prometheus with apt-get"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng sox ffmpeg prometheus </dev/null
