"""Exact vs subsampled clustering on a long tiled file, through the whole pipeline.

    .envs/serve/bin/python bench/diarization_subsample.py [--hours 2] [--caps 2000,4000,8000]
                                                         [--artifact pyannote_fixture]
                                                         [--analysis FILE]

Tiles the synthetic 2/3/4-speaker meetings (tests/meetings.py) in random order for ``--hours``, runs
``DiarizationClient.analyze`` once on a tritonserver with the artifact's models, then clusters the
same analysis exactly (no cap) and with each cap, and prints the speakers found and the DER between
the exact and the subsampled output (regular, exclusive; frame-based, 10 ms, no collar).
``--analysis FILE``: keep the analysis (a pickle, this machine's own) there and reuse it when it
exists, to try clustering changes without the Triton part (minutes per hour of audio).
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=2.0)
    p.add_argument("--caps", default="2000,4000,8000")
    p.add_argument("--artifact", default="pyannote_fixture")
    p.add_argument("--analysis", type=Path, default=None, help="cache of the analysis (pickle)")
    args = p.parse_args(argv)
    if args.analysis is not None and args.analysis.is_file():
        analysis = pickle.loads(args.analysis.read_bytes())
    else:
        analysis = analyze(args)
        if args.analysis is not None:
            args.analysis.write_bytes(pickle.dumps(analysis))
    report(analysis, args.hours, [int(c) for c in args.caps.split(",")])
    return 0


def analyze(args):
    from export_scripts.build import artifact_dir
    from inference_client import TritonClient
    from inference_client.diarization import DiarizationClient, PipelineSettings
    from serving.launcher import TritonServer
    from tests.audio import shuffled_tiling, wav_chunks
    from tests.diarization_helpers import diarization_repository, meeting_sources

    export = artifact_dir(args.artifact, cache_only=True)
    settings = PipelineSettings.from_dir(export)
    with tempfile.TemporaryDirectory(prefix="diarization-subsample-") as tmp:
        work = Path(tmp)
        wav = shuffled_tiling(work / "long.wav", meeting_sources()[1:], args.hours * 3600, seed=7)
        with TritonServer(diarization_repository(work / "repo", export)) as server:

            async def run_analysis():
                async with TritonClient(server.ports.grpc_url) as client:
                    return await DiarizationClient(client, settings).analyze(wav_chunks(wav))

            return asyncio.run(run_analysis())


def report(analysis, hours: float, caps: list[int]) -> None:
    from tests.diarization_helpers import as_tuples, frame_der

    exact = analysis.assemble(max_embeddings=None)
    print(f"{hours:g} h, {exact.num_embeddings} embeddings; exact: {len(exact.speakers)} speakers")
    for cap in caps:
        sub = analysis.assemble(max_embeddings=cap)
        der = frame_der(as_tuples(exact.turns), as_tuples(sub.turns))
        der_x = frame_der(as_tuples(exact.exclusive_turns), as_tuples(sub.exclusive_turns))
        print(f"cap {cap}: {len(sub.speakers)} speakers; DER vs exact {der:.2%} (exclusive {der_x:.2%})")


if __name__ == "__main__":
    sys.exit(main())
