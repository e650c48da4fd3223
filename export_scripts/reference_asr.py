"""Reference ASR outputs from FunASR's own PyTorch SenseVoiceSmall inference (export environment).

    python -m export_scripts.reference_asr --model-dir DIR --out result.json
        [--language auto|zh|en|yue|ja|ko|nospeech] [--use-itn 0|1] [--no-timestamps]
        [--fixture-npz fixture_clips.npz] [WAV ...]

Runs ``funasr.AutoModel(model=DIR)`` offline (``disable_update``, CPU, ``frontend_conf.dither = 0``)
and ``generate(input=<16 kHz float32 samples>, language=..., use_itn=..., output_timestamp=True)``
on each 16 kHz mono WAV, one file per call (batch 1). With ``--fixture-npz`` every clip of a
dev fixture's ``fixture_clips.npz`` is run too, each with its own language and ITN flag (keys
``fixture:audio_N``).

FunASR returns only text (and, with timestamps, word-level times); the token ids and the per-token
times are captured from inside its own computation, never recomputed: the ids are the argument of
the tokenizer's ``decode`` call in ``SenseVoiceSmall.inference`` (CTC greedy: argmax, collapse
repeats, drop blank 0 -- including the 4 leading tag tokens), the per-token times are the argument
of ``SenseVoiceSmall.post`` (CTC forced alignment over the frames after the 4 prompt frames, 60 ms
per frame: start = max(s*60-30, 0), end = min(e*60-30, (T'-4)*60-30) ms).

Output JSON::

    {"model_dir": str, "settings": {"language", "use_itn", "output_timestamp", "dither", "funasr"},
     "files": {KEY: {
        "language": str, "use_itn": bool,          # what was asked
        "token_ids": [int, ...],                   # greedy CTC ids incl. the 4 leading tags
        "text": str,                               # FunASR's raw text with tags, e.g. "<|en|><|NEUTRAL|><|Speech|><|woitn|>hello"
        "token_timestamps": [[piece, start_ms, end_ms], ...] | null,   # per text token (tags excluded), ms rounded to int
        "timestamp": [[start_ms, end_ms], ...] | null,  "words": [str, ...] | null,  # FunASR's own output (post())
        "timestamp_error": str | null              # FunASR's timestamp code raised (random-weight models can trip it)
     }}}

``KEY`` is the WAV path as given. FunASR prints to stdout: that goes to stderr here, and this script
prints one summary line per file to stderr. Read the JSON, never the output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from inference_client.audio import decode_audio

LANGUAGES = ("auto", "zh", "en", "yue", "ja", "ko", "nospeech")


def build_model(model_dir: Path):
    with contextlib.redirect_stdout(sys.stderr):
        from funasr import AutoModel

        model = AutoModel(
            model=str(model_dir),
            device="cpu",
            disable_update=True,
            disable_pbar=True,
            disable_log=True,
            log_level="ERROR",
            frontend_conf={"dither": 0.0},
        )
    if getattr(model.kwargs.get("frontend"), "dither", None) != 0.0:
        raise SystemExit("funasr frontend dither is not 0")
    return model


class Capture:
    """Records the token ids FunASR decodes and the raw token times it hands to ``post()``."""

    def __init__(self, model):
        self.ids: list[list[int]] = []
        self.raw_times: list[list] = []
        # AutoModel hands inference() copies of its kwargs: hook the tokenizer's class, not the instance
        tok_cls = type(model.kwargs["tokenizer"])
        net = model.model
        decode, post = tok_cls.decode, net.post

        def decode_hook(tok, line, **kw):
            self.ids.append([int(i) for i in line])
            return decode(tok, line, **kw)

        def post_hook(timestamp):
            self.raw_times.append([list(t) for t in timestamp])
            return post(timestamp)

        tok_cls.decode = decode_hook
        net.post = post_hook

    def reset(self):
        self.ids.clear()
        self.raw_times.clear()


def run_one(model, capture: Capture, audio, language: str, use_itn: bool, timestamps: bool) -> dict:
    def generate(ts: bool):
        capture.reset()
        with contextlib.redirect_stdout(sys.stderr):
            return model.generate(
                input=audio, language=language, use_itn=use_itn, output_timestamp=ts, disable_pbar=True
            )

    error = None
    if timestamps:
        try:
            res = generate(True)
        except Exception as e:  # noqa: BLE001 - FunASR's timestamp code fails on some random-weight outputs
            error = f"{e.__class__.__name__}: {e}"
            res = generate(False)
    else:
        res = generate(False)
    r = res[0]
    if len(capture.ids) != 1:
        raise SystemExit(f"expected one decode call, saw {len(capture.ids)}")
    token_times = None
    if capture.raw_times:
        token_times = [
            [str(p), int(round(float(s) * 1000)), int(round(float(e) * 1000))]
            for p, s, e in capture.raw_times[0]
        ]
    elif timestamps and error is None and "timestamp" not in r:
        token_times = []  # FunASR returns no timestamps when the text has no tokens after the tags
    return {
        "language": language,
        "use_itn": use_itn,
        "token_ids": capture.ids[0],
        "text": r["text"],
        "token_timestamps": token_times,
        "timestamp": [[int(a), int(b)] for a, b in r["timestamp"]] if "timestamp" in r else None,
        "words": list(r["words"]) if "words" in r else None,
        "timestamp_error": error,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export_scripts.reference_asr", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model-dir", required=True, type=Path, help="SenseVoiceSmall folder (hub layout)")
    p.add_argument("--out", required=True, type=Path, help="JSON file to write")
    p.add_argument("--language", default="auto", choices=LANGUAGES)
    p.add_argument("--use-itn", type=int, choices=(0, 1), default=0)
    p.add_argument("--no-timestamps", action="store_true", help="output_timestamp=False")
    p.add_argument("--fixture-npz", type=Path, default=None, help="also run a dev fixture's clips")
    p.add_argument("wavs", nargs="*", type=Path)
    args = p.parse_args(argv)
    if not args.wavs and args.fixture_npz is None:
        p.error("give WAV files and/or --fixture-npz")

    import numpy as np

    with contextlib.redirect_stdout(sys.stderr):
        import funasr
    model = build_model(args.model_dir.resolve())
    capture = Capture(model)
    timestamps = not args.no_timestamps
    files = {}
    for wav in args.wavs:
        files[str(wav)] = run_one(
            model, capture, decode_audio(wav), args.language, bool(args.use_itn), timestamps
        )
        print(f"{wav}: {files[str(wav)]['text']}", file=sys.stderr, flush=True)
    if args.fixture_npz is not None:
        z = np.load(args.fixture_npz)
        for clip in json.loads(str(z["meta"])):
            key = f"fixture:{clip['key']}"
            files[key] = run_one(
                model, capture, z[clip["key"]], clip["language"], bool(clip["with_itn"]), timestamps
            )
            print(f"{key}: {files[key]['text']}", file=sys.stderr, flush=True)
    result = {
        "model_dir": str(args.model_dir),
        "settings": {
            "language": args.language,
            "use_itn": bool(args.use_itn),
            "output_timestamp": timestamps,
            "dither": 0.0,
            "funasr": getattr(funasr, "__version__", "unknown"),
        },
        "files": files,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
