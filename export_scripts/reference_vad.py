"""Reference speech segments from FunASR's own PyTorch fsmn-VAD (export environment).

    python -m export_scripts.reference_vad --model-dir DIR [--max-end-silence-ms 800]
        [--max-single-segment-ms 30000] [--dynamic-silence] --out result.json WAV [WAV ...]

Runs ``funasr.AutoModel(model=DIR)`` offline (``disable_update``, CPU, dither 0) on each 16 kHz mono
wav and writes ``{"files": {wav: [[start_ms, end_ms], ...]}, "settings": {...}}``.

Settings that make FunASR comparable with funasr-onnx's ``Fsmn_vad`` / our ``speechlib.vad``:

* ``max_end_silence_time`` is passed to every ``generate()`` call. Without it funasr 1.4.16 applies
  its "dynamic silence" schedule (``DEFAULT_SILENCE_SCHEDULE``: 2000 ms end silence for the first
  10 s of speech, then 1000/800/600/... ms, and ``speech_noise_thres`` 0.5 instead of 0.6), which
  neither funasr-onnx nor we implement. ``--dynamic-silence`` leaves it on (for comparison only).
* ``max_single_segment_time`` is a *construction* option (``AutoModel(..., max_single_segment_time=)``
  reaches ``VADXOptions``); passed to ``generate()`` it is silently ignored. It is set at
  construction and checked on the built model.
* ``frontend_conf.dither = 0`` (fsmn-VAD's config already says 0.0; enforced).

FunASR prints to stdout; this script sends that to stderr and prints one summary line per file.
Read the JSON, never the output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from inference_client.audio import decode_audio


def build_model(model_dir: Path, max_single_segment_ms: int):
    with contextlib.redirect_stdout(sys.stderr):
        from funasr import AutoModel

        model = AutoModel(
            model=str(model_dir),
            device="cpu",
            disable_update=True,
            disable_pbar=True,
            disable_log=True,
            log_level="ERROR",
            max_single_segment_time=int(max_single_segment_ms),
            frontend_conf={"dither": 0.0},
        )
    vad_opts = model.model.vad_opts
    if vad_opts.max_single_segment_time != int(max_single_segment_ms):
        raise SystemExit(
            f"funasr did not apply max_single_segment_time (model has {vad_opts.max_single_segment_time})"
        )
    if getattr(model.kwargs.get("frontend"), "dither", 0.0) != 0.0:
        raise SystemExit("funasr frontend dither is not 0")
    return model


def segments_for(model, audio, max_end_silence_ms: int | None) -> list[list[int]]:
    kwargs = {}
    if max_end_silence_ms is not None:
        kwargs["max_end_silence_time"] = int(max_end_silence_ms)
    with contextlib.redirect_stdout(sys.stderr):
        res = model.generate(input=audio, **kwargs)
    return [[int(s), int(e)] for s, e in res[0]["value"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export_scripts.reference_vad", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model-dir", required=True, type=Path)
    p.add_argument("--max-end-silence-ms", type=int, default=800)
    p.add_argument("--max-single-segment-ms", type=int, default=30000)
    p.add_argument(
        "--dynamic-silence",
        action="store_true",
        help="do not pass max_end_silence_time: let funasr apply its dynamic schedule (comparison only)",
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("wavs", nargs="+", type=Path)
    args = p.parse_args(argv)

    model = build_model(args.model_dir, args.max_single_segment_ms)
    end_sil = None if args.dynamic_silence else args.max_end_silence_ms
    files = {}
    for wav in args.wavs:
        segs = segments_for(model, decode_audio(wav), end_sil)
        files[str(wav)] = segs
        print(f"{wav}: {len(segs)} segments", flush=True)

    import funasr

    settings = {
        "model_dir": str(args.model_dir),
        "max_end_silence_ms": end_sil,
        "dynamic_silence": bool(args.dynamic_silence),
        "max_single_segment_ms": args.max_single_segment_ms,
        "dither": 0.0,
        "generate_kwargs": {} if end_sil is None else {"max_end_silence_time": end_sil},
        "construct_kwargs": {
            "max_single_segment_time": args.max_single_segment_ms,
            "frontend_conf": {"dither": 0.0},
        },
        "funasr": getattr(funasr, "__version__", "unknown"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"files": files, "settings": settings}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
