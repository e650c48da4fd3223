"""Command line: ``python -m inference_client vad FILE.wav`` prints the speech segments of a file;
``python -m inference_client ready [MODEL ...]`` waits until Triton (and those models) are ready."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from inference_client.audio import decode_audio
from inference_client.client import DEFAULT_URL, TritonClient
from inference_client.vad import VADClient
from speechlib.interfaces import SAMPLE_RATE


async def _vad(args: argparse.Namespace) -> int:
    waveform = decode_audio(args.file)
    async with TritonClient(args.url) as client:
        segments = await VADClient(client).segments(waveform, args.max_end_silence_ms)
    if args.json:
        print(json.dumps([{"start_ms": s.start_ms, "end_ms": s.end_ms} for s in segments]))
    else:
        print(f"{args.file}: {len(waveform) / SAMPLE_RATE:.2f} s, {len(segments)} speech segment(s)")
        for s in segments:
            print(f"  {s.start:8.2f} s -> {s.end:8.2f} s")
    return 0


async def _ready(args: argparse.Namespace) -> int:
    async with TritonClient(args.url) as client:
        await client.wait_ready(args.models, timeout_s=args.timeout)
        meta = await client.server_metadata()
    print(
        f"Triton {meta.get('version', '?')} at {args.url} is ready"
        + (f": {', '.join(args.models)}" if args.models else "")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inference_client", description=__doc__)
    ap.add_argument("--url", default=DEFAULT_URL, help="Triton gRPC host:port (default %(default)s)")
    sub = ap.add_subparsers(dest="command", required=True)
    vad = sub.add_parser("vad", help="speech segments of an audio file (any format FFmpeg reads)")
    vad.add_argument("file")
    vad.add_argument("--max-end-silence-ms", type=int, default=None)
    vad.add_argument("--json", action="store_true")
    ready = sub.add_parser("ready", help="wait until Triton and the given models are ready")
    ready.add_argument("models", nargs="*")
    ready.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args(argv)
    return asyncio.run(_vad(args) if args.command == "vad" else _ready(args))


if __name__ == "__main__":
    sys.exit(main())
