"""Dry runs of the end-to-end transcription benchmark and of its GPU check (tiny models, CPU).

Both scripts run as a user runs them (a subprocess of this environment's Python); what they report
is read back from their JSON. Their numbers mean nothing here: these tests check that every stage
runs and returns something, so the benchmark and the GPU check still work when a device is lent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_script(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.export
@pytest.mark.slow
def test_transcription_bench_quick(tmp_path):
    """Ours (Transcriber on Triton) and the reference (funasr-onnx, then pyannote.audio in the export
    environment) both transcribe and diarize the same 30 s; the script exits 1 when either side
    returns no text or no speaker turns."""
    out = tmp_path / "bench.json"
    p = run_script(["bench/transcription_bench.py", "--quick", "--json", str(out)], timeout=590)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    speed = json.loads(out.read_text())["speed"]
    assert speed["audio_s"] == pytest.approx(30.0, abs=0.01)
    assert len(speed["ours_s"]) == len(speed["reference_s"]) == 1
    assert (
        speed["ours_s"][0] > 0 and speed["reference_asr_s"][0] > 0 and speed["reference_diarization_s"][0] > 0
    )
    assert speed["texts"]["ours"] > 0 and speed["texts"]["reference"] > 0
    assert speed["turns"]["ours"] > 0 and speed["turns"]["reference"] > 0
    # the same VAD and ASR weights on the same file: the same segments with the same text
    agree = speed["agreement"]
    assert agree["ours"] == agree["funasr"] == agree["same_bounds"] == agree["same_text"] > 0
    assert speed["same_whole_text"]
    assert 0.0 <= speed["der_exclusive"] <= 1.0
    for stage in ("decode", "vad_asr", "diarization_inference", "clustering", "align"):
        assert stage in speed["ours_timings"][0]


@pytest.mark.slow
def test_transcription_gpu_check_cpu_dry_run(tmp_path):
    """The GPU check's flow on the CPU: 30 s, our vad model, the tiny SenseVoice and the small pyannote
    networks in torch on a local tritonserver, then clustering; every stage timed and non-empty."""
    p = run_script(["bench/gpu/transcription_gpu_check.py", "--cpu", "--out", str(tmp_path)], timeout=590)
    result = json.loads((tmp_path / "transcription_gpu_check.json").read_text())
    assert p.returncode == 0 and result["ok"], (result.get("error"), p.stdout[-3000:], p.stderr[-2000:])
    stages = result["stages"]["fp32"]
    for name in ("vad", "asr", "segmentation", "embeddings", "clustering"):
        assert stages[name]["seconds"] > 0, name
    assert stages["vad"]["segments"] > 0 and stages["asr"]["tokens"] > 0
    assert stages["segmentation"]["requests"] == 21  # 30 s: windows of 10 s at a 1 s step
    assert stages["embeddings"]["requests"] > 0 and stages["clustering"]["speakers"] > 0
