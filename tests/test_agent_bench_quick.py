"""Dry run of the live agent benchmark (bench/agent_bench.py --quick): one simulated speaker, three
espeak-ng sentences pushed in real time through the agent's SpeakerPipeline against a real
tritonserver (vad_stream + the installed asr, the small trained fixture), then the memory phase
(1 vs 4 pipelines in a fresh process).

The script runs as a user runs it (a subprocess of this environment's Python); its JSON is read back.
Its latencies mean little here (2 shared cores); this checks that every stage runs, that the report
is complete and self-consistent, and the per-participant memory bound of issue 15.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LATENCY_KEYS = ("final", "vad_wait", "after_vad", "asr_rtt", "agent", "first_interim")


@pytest.mark.slow
def test_agent_bench_quick(tmp_path):
    out = tmp_path / "agent_bench.json"
    p = subprocess.run(
        [sys.executable, "bench/agent_bench.py", "--quick", "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    report = json.loads(out.read_text())

    (run,) = report["runs"]
    assert run["speakers"] == 1
    # every sentence ended by VAD's silence (not by the track's close), each as exactly one final
    assert run["utterances"] == report["utterances_per_speaker"] == 3
    assert run["finals"] == run["finals_matching_one_utterance"] == 3
    assert run["finals_ended_by_close"] == 0
    assert run["missing_finals"] == [] and run["utterances_with_empty_text"] == 0
    assert run["interims"] >= 1 and run["published"] == run["finals"] + run["interims"]

    lat = run["latency"]
    for key in LATENCY_KEYS:
        assert lat[key]["n"] >= 1, key
        assert 0 < lat[key]["p50_ms"] <= lat[key]["p95_ms"] <= lat[key]["max_ms"], (key, lat[key])
    assert lat["final"]["n"] == lat["vad_wait"]["n"] == 3
    # the final's parts: VAD's wait + after the decision; the asr request is part of the latter
    assert lat["vad_wait"]["max_ms"] < lat["final"]["max_ms"]
    assert lat["asr_rtt"]["p50_ms"] < lat["after_vad"]["max_ms"]
    # VAD places the end a little after the speech's last sample: measured from the known end, a final
    # takes longer than from VAD's end
    assert lat["final_from_speech_end"]["n"] == 3
    assert lat["final_from_speech_end"]["p50_ms"] > lat["final"]["p50_ms"]

    triton = run["triton"]
    # interims that return after their final are dropped, not published
    assert triton["asr"]["requests"] >= run["finals"] + run["interims"]
    assert triton["vad_stream"]["requests"] > 0
    for model in ("asr", "vad_stream"):
        assert triton[model]["compute_ms_per_request"] > 0 and triton[model]["queue_ms_per_request"] >= 0

    assert report["max_speakers_p95_le_1s"]["measured"] == [1]
    assert run["asr_rtt_mean_ms_published"] > 0
    warm = report["warm_up"]
    assert warm["triton"]["asr"]["requests"] == len(warm["asr_call_ms"]) == 5
    assert warm["triton"]["vad_stream"]["requests"] == warm["vad_stream_chunk_ms"]["n"] == 50
    assert warm["asr_client_overhead_ms"] < min(warm["asr_call_ms"])
    (overhead,) = report["agent_overhead_vs_100ms"]
    assert overhead["agent_p50_ms"] == lat["agent"]["p50_ms"] and overhead["target_ms"] == 100
    assert overhead["asr_client_overhead_ms"] == warm["asr_client_overhead_ms"]

    memory = report["memory"]
    assert memory["pipelines"] == 4 and memory["finals"] > 0
    assert memory["one"]["peak_rss_mib"] > 0 and memory["many"]["peak_rss_mib"] > 0
    # issue 15: <= 15 MB more per active participant
    assert memory["per_participant_mib"]["peak_rss_mib"] <= 15 * 1e6 / 2**20
