"""How the trained diarization fixture's clustering parameters (``tests/fixtures/diarization``'s
``params``: VBx ``threshold``, ``Fa``, ``Fb``) were chosen: every combination of a small grid, on the
scripted 2-, 3- and 4-speaker meetings of ``--seeds`` (tests/meetings.py ``scripted_meeting``, 16 kHz
WAV), ranked by how many meetings get the right speaker count, then by mean DER against the known turns
(tests.diarization_helpers.frame_der: 10 ms frames, no collar, overlaps scored).

    .envs/serve/bin/python bench/diarization_params_sweep.py [--seeds 0,1,2,3,4,5] [--top 12] [--mp3]

``--mp3``: the meetings as the tests upload them (64 kb/s mp3, decoded by our decoder).

The Triton part (segmentation + embeddings of every window) runs once per meeting on a tritonserver
with the fixture's models; each parameter set re-clusters those windows (WindowAnalysis.assemble).
A fixture is the only thing this tunes: real models use their own published parameters.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FAS = (0.07, 0.1, 0.2, 0.3, 0.5)
FBS = (0.3, 0.8, 1.5, 3.0)


def main() -> int:
    import numpy as np
    import soundfile as sf

    from inference_client import TritonClient
    from inference_client.audio import decode_audio
    from inference_client.diarization import DiarizationClient
    from serving.launcher import TritonServer
    from speechlib.diarization.pipeline import PipelineSettings
    from tests.diarization_helpers import as_tuples, frame_der, trained_fixture_artifacts
    from tests.fixture_models import fixture_repository
    from tests.meetings import scripted_meeting, scripted_meeting_mp3

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--mp3", action="store_true", help="the meetings' mp3 encodings (as the tests upload)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]

    artifacts = trained_fixture_artifacts()
    base = PipelineSettings.from_dir(artifacts)
    make = scripted_meeting_mp3 if args.mp3 else scripted_meeting
    meetings = [(n, s, *make(n, s)) for n in (2, 3, 4) for s in seeds]
    analyses = []
    with tempfile.TemporaryDirectory() as tmp:
        with TritonServer(fixture_repository(Path(tmp) / "repo", artifacts)) as server:

            async def analyse() -> None:
                async with TritonClient(server.ports.grpc_url) as client:
                    diarizer = DiarizationClient(client, settings=base)
                    for n, seed, wav, meta in meetings:
                        x = decode_audio(wav) if args.mp3 else sf.read(str(wav), dtype="float32")[0]
                        analyses.append((n, seed, meta, await diarizer.analyze(x)))

            asyncio.run(analyse())

    rows = []
    for threshold, fa, fb in itertools.product(THRESHOLDS, FAS, FBS):
        settings = dataclasses.replace(base, threshold=threshold, Fa=fa, Fb=fb)
        off, ders = [], []
        for n, _, meta, analysis in analyses:
            result = dataclasses.replace(analysis, settings=settings).assemble()
            off.append(len({t.speaker for t in result.exclusive_turns}) - n)
            ders.append(frame_der([tuple(t) for t in meta["turns"]], as_tuples(result.turns)))
        rows.append((sum(d == 0 for d in off), float(np.mean(ders)), (threshold, fa, fb), off))
    rows.sort(key=lambda r: (-r[0], r[1]))
    current = (base.threshold, base.Fa, base.Fb)
    order = ", ".join(f"{n}spk/seed{s}" for n, s, _, _ in analyses)
    print(f"meetings (speakers found - true, in this order): {order}")
    for right, der, (th, fa, fb), off in rows[: args.top] + [r for r in rows if r[2] == current]:
        mark = "  <- the fixture's params" if (th, fa, fb) == current else ""
        print(f"right {right}/{len(analyses)} mean DER {der:6.2%} threshold {th} Fa {fa} Fb {fb} {off}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
