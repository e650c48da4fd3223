"""Dev SenseVoiceSmall models in the hub layout, built from FunASR's own classes (export environment).

    python -m export_scripts.sensevoice_dev --out DIR --variant tiny|fixture|full [--seed N]
                                            [--max-train-steps N]

Writes ``DIR`` in the layout of ``iic/SenseVoiceSmall``: ``config.yaml``, ``model.pt`` (a plain
state dict), ``am.mvn``, ``chn_jpn_yue_eng_ko_spectok.bpe.model``, ``configuration.json`` and
``dev_meta.json``; the fixture also ``fixture_clips.npz``. Nothing is downloaded.

Variants (all ``SenseVoiceSmall`` + ``SenseVoiceEncoderSmall`` + ``WavFrontend`` +
``SentencepiecesTokenizer``, 560-dim LFR input, vocabulary 25055):

* ``tiny``: 2+1 blocks of width 32, random weights from ``--seed``; the CTC blank bias is raised
  (``ctc_lo.bias[0] = BLANK_BIAS``) so greedy output is short and varied, not one token per frame.
  For export/serving parity tests; exports in seconds.
* ``fixture``: 4+2 blocks of width 128 (4.2 M params) trained on CPU (fixed seed, at most
  ``--max-train-steps``) on ``FIXTURE_CLIPS``: espeak-ng utterances in English, Mandarin and
  Cantonese with their language/emotion/event/ITN tags, until greedy CTC reproduces every
  utterance's token ids exactly, with the language given and with ``auto``. The builder then loads
  the written folder with ``funasr.AutoModel`` and checks ``generate()`` returns the expected text for
  every clip; it exits 1 otherwise. The clips (16 kHz float32, exactly the audio trained on) and their
  expected outputs are stored in ``fixture_clips.npz``; each is also trained in ``CLIP_VARIANTS`` cuts
  with VAD's margins of silence around it (``padded_clips``), as VAD cuts it out of a recording.
  Never an accuracy claim.

  It also learns the lines of the scripted meetings of ``tests/meetings.py`` (``script_lines()``:
  English and Mandarin sentences, each spoken alone by its meeting voice), so that a held-out
  arrangement of them (``scripted_meeting``) transcribes exactly through VAD, from mp3 too. Each
  line is trained as ``SCRIPT_VARIANTS`` variants cut the way VAD cuts speech out of a meeting
  (``LEAD_S`` before the onset, ``TAIL_S`` after the end, sample-exact offsets, -60 dB noise),
  with the meeting's gains, half of them through an mp3 round trip, with and without ITN (the same
  text: lower case, no punctuation); exactness is checked on ``SCRIPT_CHECK_VARIANTS`` other
  variants per line (not trained on), with the language given and with ``auto``, and again by
  ``funasr.AutoModel``. Training stops once both the clips and the check variants are exact; after
  ``SCRIPT_STEPS`` it stops as soon as the clips are (the build fails only for the clips): how many
  check variants came out exact is recorded in ``dev_meta.json`` (``training.script_exact``), and
  the end-to-end test (tests/test_meeting_e2e.py) is what says whether meetings come back exact.
  These lines are not stored in ``fixture_clips.npz``. (With 16 variants, 2 check variants and a
  300-step decay the build stopped at 44/46 check variants and 8 of the 112 lines of the 2/3/4-speaker
  meetings, mp3 and WAV, came back with a short word dropped; with 48, 6 and 700 it stops at 138/138,
  ~500 steps, and all 112 came back exact.)
* ``full``: the real size (``encoder_conf`` of SenseVoiceSmall: 512 wide, 50+20 blocks, 234 M params)
  with random weights and the raised blank bias. For benchmarks only.

The BPE (``chn_jpn_yue_eng_ko_spectok.bpe.model``) is a sentencepiece BPE trained here on generated
text (every CJK unified ideograph, syllable words, the fixture sentences) with exactly 25055 pieces:
``<unk>`` (0, the CTC blank), ``<s>``, ``</s>``, 24881 trained pieces, then 171 user-defined tags at
24884..25054 with SenseVoice's ids (``SPECIAL_TOKENS``); ids without a known tag hold placeholder
tags ``<|dev_NNNNN|>``. Tags are user-defined pieces, so encoding text with tags yields each tag as
one piece (FunASR's timestamp code relies on that).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BPE_NAME = "chn_jpn_yue_eng_ko_spectok.bpe.model"
VOCAB_SIZE = 25055
SPECIAL_FIRST = 24884  # first tag id; 0..2 control pieces, 3..24883 trained pieces
DEFAULT_SEED = 20241129
BLANK_BIAS = 2.7
UNUSED_BIAS_DROP = 10.0  # fixture: vocabulary rows not trained are pushed down by this
MAX_TRAIN_STEPS = 1500
SAMPLE_RATE = 16000
MODEL_ID = "iic/SenseVoiceSmall"

# Known SenseVoice tags at their real ids (funasr/models/sense_voice/model.py: lid_int_dict,
# textnorm_int_dict, emo_dict); the event tags' ids are not in FunASR's source and are placed here.
SPECIAL_TOKENS: dict[int, str] = {
    24884: "<|zh|>",
    24885: "<|en|>",
    24888: "<|yue|>",
    24892: "<|ja|>",
    24896: "<|ko|>",
    24992: "<|nospeech|>",
    24993: "<|Speech|>",
    24994: "<|BGM|>",
    24995: "<|Laughter|>",
    24996: "<|Applause|>",
    24997: "<|Cry|>",
    24998: "<|Sneeze|>",
    24999: "<|Breath|>",
    25000: "<|Cough|>",
    25001: "<|HAPPY|>",
    25002: "<|SAD|>",
    25003: "<|ANGRY|>",
    25004: "<|NEUTRAL|>",
    25005: "<|FEARFUL|>",
    25006: "<|DISGUSTED|>",
    25007: "<|SURPRISED|>",
    25008: "<|Sing|>",
    25009: "<|EMO_UNKNOWN|>",
    25010: "<|Speech_Noise|>",
    25011: "<|GBG|>",
    25012: "<|Event_UNK|>",
    25016: "<|withitn|>",
    25017: "<|woitn|>",
}

# Architectures. ``full`` is SenseVoiceSmall's own encoder_conf.
ENCODERS: dict[str, dict] = {
    "tiny": dict(output_size=32, attention_heads=4, linear_units=64, num_blocks=2, tp_blocks=1),
    "fixture": dict(output_size=128, attention_heads=4, linear_units=256, num_blocks=4, tp_blocks=2),
    "full": dict(output_size=512, attention_heads=4, linear_units=2048, num_blocks=50, tp_blocks=20),
}
DROPOUT = {"tiny": 0.1, "fixture": 0.0, "full": 0.1}

# (text, espeak voice, language, emotion, event, with_itn, speed wpm, pitch, background)
# The last two entries are the same audio with and without ITN.
FIXTURE_CLIPS: tuple[tuple, ...] = (
    ("hello everyone", "en-us", "en", "NEUTRAL", "Speech", False, None, None, None),
    ("the meeting starts at nine", "en-gb+f3", "en", "NEUTRAL", "Speech", False, None, None, None),
    ("Please send me the slides.", "en-us+m7", "en", "NEUTRAL", "Speech", True, None, None, None),
    ("what a wonderful day", "en-us+f4", "en", "HAPPY", "Speech", False, 200, 85, None),
    ("thank you for listening", "en-us", "en", "NEUTRAL", "BGM", False, None, None, "chord"),
    ("你好世界", "cmn", "zh", "NEUTRAL", "Speech", False, None, None, None),
    ("我们明天下午开会", "cmn", "zh", "NEUTRAL", "Speech", False, 150, None, None),
    ("谢谢大家", "cmn", "zh", "HAPPY", "Speech", False, 190, 85, None),
    ("早晨", "yue", "yue", "NEUTRAL", "Speech", False, None, None, None),
    ("it costs twenty five dollars", "en-us", "en", "NEUTRAL", "Speech", False, None, None, None),
    ("It costs 25 dollars.", "en-us", "en", "NEUTRAL", "Speech", True, None, None, "same_as_previous"),
)
SPOKEN_OVERRIDE = {"It costs 25 dollars.": "it costs twenty five dollars"}

# Scripted-meeting lines (tests/meetings.py): how they are cut and varied for training.
SCRIPT_VARIANTS = 48  # trained variants per line (one drawn per line per step)
SCRIPT_CHECK_VARIANTS = 6  # held-out variants per line for the exactness check
LEAD_S = (0.15, 0.40)  # audio kept before the onset: VAD starts ~0.2-0.3 s early
TAIL_S = (0.05, 0.45)  # and after the end: VAD ends ~0.1-0.33 s late
GAIN_DB = 5.0  # peak 0.5 x 10^(U(-5, 5)/20) (the meetings use +-4 dB)
MP3_BIT_RATES = (32000, 64000, 128000)
CLIP_VARIANTS = 4  # VAD-like cuts of each of the 11 fixture clips, trained beside the clip itself
SCRIPT_STEPS = 700  # learning rate: cosine from LR to LR_END over these steps, then LR_END
LR, LR_END = 2e-3, 1e-4


def eprint(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def _quiet_funasr():
    with contextlib.redirect_stdout(sys.stderr):
        import funasr  # noqa: F401
        import funasr.models.sense_voice.model  # noqa: F401  (registers SenseVoiceSmall/-EncoderSmall)
        from funasr.frontends.wav_frontend import WavFrontend
        from funasr.register import tables
    return tables, WavFrontend


# -- tokenizer ----------------------------------------------------------------------------------


def special_pieces() -> list[str]:
    """The 171 tag pieces for ids 24884..25054, in id order."""
    return [SPECIAL_TOKENS.get(i, f"<|dev_{i}|>") for i in range(SPECIAL_FIRST, VOCAB_SIZE)]


def _bpe_corpus(seed: int) -> list[str]:
    rng = random.Random(seed)
    cjk = [chr(c) for c in range(0x4E00, 0x9FFF + 1)]
    order = cjk[:]
    rng.shuffle(order)
    syllables = [a + b for a in "bcdfghjklmnprstvwyz" for b in ("a", "e", "i", "o", "u", "ai", "ou", "ee")]
    lines = []
    for i in range(0, len(order), 20):  # every ideograph at least once
        lines.append(" ".join("".join(order[i + j : i + j + rng.randint(1, 3)]) for j in range(0, 20, 3)))
    common = cjk[:3000]
    for _ in range(30000):
        words = []
        for _ in range(rng.randint(3, 10)):
            if rng.random() < 0.5:
                words.append("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))))
            else:
                words.append("".join(rng.choice(common) for _ in range(rng.randint(1, 4))))
        lines.append(" ".join(words))
    english = (
        "the meeting starts at nine please send me the slides what a wonderful day thank you for "
        "listening hello everyone it costs twenty five dollars we will review the budget tomorrow "
        "morning and discuss the new project with the team"
    )
    lines.extend([english] * 200)
    lines.extend(c[0] for c in FIXTURE_CLIPS)  # once: Mandarin sentences must not become one piece
    for _, language, text in _script_lines():
        lines.extend([text] * (50 if language == "en" else 1))  # English words become pieces
    return lines


def _script_lines() -> list[tuple[int, str, str]]:
    """The scripted meetings' lines, (voice index, language, text) (tests/meetings.py)."""
    from tests.meetings import script_lines

    return script_lines()


def train_bpe(path: Path, seed: int) -> None:
    """Train the 25055-piece BPE and move the tags to ids 24884..25054 (see module doc)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    tags = special_pieces()
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_bpe_corpus(seed)),
        model_writer=buf,
        vocab_size=VOCAB_SIZE,
        model_type="bpe",
        character_coverage=1.0,
        # a piece re-encoded alone must stay one piece (FunASR's timestamp code re-encodes each piece)
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        user_defined_symbols=tags,
        num_threads=1,
        minloglevel=2,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
    )
    proto = pb.ModelProto()
    proto.ParseFromString(buf.getvalue())
    pieces = list(proto.pieces)
    control = pieces[:3]
    user = [p for p in pieces if p.type == pb.ModelProto.SentencePiece.USER_DEFINED]
    normal = [p for p in pieces[3:] if p.type != pb.ModelProto.SentencePiece.USER_DEFINED]
    assert [p.piece for p in user] == tags, "sentencepiece reordered the user-defined symbols"
    ordered = [*control, *normal, *user]
    assert len(ordered) == VOCAB_SIZE and len(control) + len(normal) == SPECIAL_FIRST
    copies = []
    for p in ordered:
        q = pb.ModelProto.SentencePiece()
        q.CopyFrom(p)
        copies.append(q)
    del proto.pieces[:]
    proto.pieces.extend(copies)
    path.write_bytes(proto.SerializeToString())

    sp = spm.SentencePieceProcessor(model_file=str(path))
    assert sp.get_piece_size() == VOCAB_SIZE
    for i, piece in SPECIAL_TOKENS.items():
        assert sp.id_to_piece(i) == piece, (i, sp.id_to_piece(i))
    assert sp.id_to_piece(0) == "<unk>"
    for text in [c[0] for c in FIXTURE_CLIPS] + [t for _, _, t in _script_lines()]:
        ids = sp.encode(text)
        assert 0 not in ids, f"fixture text {text!r} has characters the BPE maps to <unk>/blank"
        for piece in sp.encode(text, out_type=str):
            assert len(sp.encode(piece)) == 1, f"piece {piece!r} does not re-encode to itself"


# -- audio and features -------------------------------------------------------------------------


def espeak(text: str, voice: str, speed: int | None, pitch: int | None):
    """espeak-ng speech as 16 kHz mono float32 (espeak-ng -> sox resample), silence trimmed."""
    import numpy as np
    import soundfile as sf

    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y espeak-ng sox)")
    with tempfile.TemporaryDirectory() as d:
        raw, out = Path(d) / "raw.wav", Path(d) / "out.wav"
        cmd = ["espeak-ng", "-v", voice, "--stdin", "-w", str(raw)]
        if speed is not None:
            cmd += ["-s", str(speed)]
        if pitch is not None:
            cmd += ["-p", str(pitch)]
        subprocess.run(cmd, input=text.encode(), check=True, capture_output=True)
        subprocess.run(
            [
                "sox",
                "-D",
                str(raw),
                "-r",
                str(SAMPLE_RATE),
                "-c",
                "1",
                "-e",
                "floating-point",
                "-b",
                "32",
                str(out),
            ],
            check=True,
            capture_output=True,
        )
        audio, sr = sf.read(str(out), dtype="float32")
    assert sr == SAMPLE_RATE
    # trim leading/trailing near-silence (10 ms frames, -40 dB), keep 100 ms margins
    n = SAMPLE_RATE // 100
    frames = len(audio) // n
    rms = np.sqrt(np.mean(audio[: frames * n].reshape(frames, n).astype(np.float64) ** 2, axis=1))
    active = np.flatnonzero(rms >= rms.max() * 10 ** (-40 / 20))
    lo, hi = max(0, (active[0] - 10) * n), min(len(audio), (active[-1] + 11) * n)
    return np.ascontiguousarray(audio[lo:hi], dtype=np.float32)


def fixture_audio(seed: int):
    """The fixture clips' audio (list of float32 arrays) and their metadata entries."""
    import numpy as np

    rng = np.random.default_rng(seed)
    audios, entries = [], []
    for text, voice, lang, emo, event, itn, speed, pitch, background in FIXTURE_CLIPS:
        if background == "same_as_previous":
            audio = audios[-1].copy()
        else:
            audio = espeak(SPOKEN_OVERRIDE.get(text, text), voice, speed, pitch)
            if background == "chord":  # soft sustained A-major chord + a little noise under the speech
                t = np.arange(len(audio)) / SAMPLE_RATE
                chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63, 440.0)) / 4
                audio = audio + 0.15 * chord.astype(np.float32) + 0.002 * rng.standard_normal(len(audio))
            audio = (0.8 * audio / max(1e-6, float(np.max(np.abs(audio))))).astype(np.float32)
        audios.append(audio)
        entries.append(
            {"text": text, "language": lang, "emotion": emo, "event": event, "with_itn": itn, "voice": voice}
        )
    return audios, entries


def script_audio(seed: int):
    """The scripted meetings' lines as training and check variants.

    Returns ``(train, check, entries)``: ``train[i]`` holds ``SCRIPT_VARIANTS`` waveforms of line
    ``i``, ``check[i]`` ``SCRIPT_CHECK_VARIANTS`` others (never trained on), ``entries[i]`` its
    metadata (text, language, voice; NEUTRAL, Speech). Each variant: the utterance as the meetings
    use it (``tests.meetings.utterance``) at a random gain, with ``LEAD_S``/``TAIL_S`` of -60 dB noise
    around it, every other one through an mp3 round trip at a random bit rate."""
    import numpy as np

    from tests.meetings import VOICES, mp3_round_trip, utterance

    rng = np.random.default_rng(seed + 1)

    def variant(x, k: int):
        lead = int(rng.uniform(*LEAD_S) * SAMPLE_RATE)
        tail = int(rng.uniform(*TAIL_S) * SAMPLE_RATE)
        gain = 0.5 * 10 ** (rng.uniform(-GAIN_DB, GAIN_DB) / 20) / max(1e-6, float(np.abs(x).max()))
        y = np.concatenate([np.zeros(lead, np.float32), x * np.float32(gain), np.zeros(tail, np.float32)])
        y = (y + rng.standard_normal(y.size) * 10 ** (-60 / 20)).astype(np.float32)
        if k % 2:
            y = mp3_round_trip(y, int(rng.choice(MP3_BIT_RATES)))
        return y

    train, check, entries = [], [], []
    for voice, language, text in _script_lines():
        x = utterance(voice, text)
        train.append([variant(x, k) for k in range(SCRIPT_VARIANTS)])
        check.append([variant(x, k) for k in range(SCRIPT_CHECK_VARIANTS)])
        entries.append(
            {
                "text": text,
                "language": language,
                "emotion": "NEUTRAL",
                "event": "Speech",
                "with_itn": False,
                "voice": "+".join(map(str, VOICES[voice])),
            }
        )
    return train, check, entries


def padded_clips(audios, seed: int, n: int = CLIP_VARIANTS):
    """Each fixture clip as VAD cuts it out of a recording with silence around it: ``n`` copies with
    ``LEAD_S`` of silence before and ``TAIL_S`` after (zeros, or -70 dB noise every other one)."""
    import numpy as np

    rng = np.random.default_rng(seed + 2)
    out = []
    for a in audios:
        variants = []
        for k in range(n):
            lead = np.zeros(int(rng.uniform(*LEAD_S) * SAMPLE_RATE), np.float32)
            tail = np.zeros(int(rng.uniform(*TAIL_S) * SAMPLE_RATE), np.float32)
            y = np.concatenate([lead, a, tail])
            if k % 2:
                y = (y + rng.standard_normal(y.size) * 10 ** (-70 / 20)).astype(np.float32)
            variants.append(y)
        out.append(variants)
    return out


def frontend_conf() -> dict:
    return dict(
        fs=SAMPLE_RATE,
        window="hamming",
        n_mels=80,
        frame_length=25,
        frame_shift=10,
        lfr_m=7,
        lfr_n=6,
        dither=0.0,
    )


def lfr_features(audios, cmvn_file: Path | None):
    """FunASR WavFrontend features (fbank 80, LFR 7/6, CMVN if given; dither 0) for each clip."""
    import torch

    _, WavFrontend = _quiet_funasr()
    fe = WavFrontend(cmvn_file=str(cmvn_file) if cmvn_file else None, **frontend_conf())
    fe.eval()
    feats = []
    with torch.no_grad():
        for a in audios:
            f, n = fe(torch.from_numpy(a)[None, :], torch.tensor([len(a)]))
            feats.append(f[0, : int(n[0])].clone())
    return feats


def write_cmvn(path: Path, audios) -> None:
    """``am.mvn`` in FunASR's Kaldi-nnet text form: AddShift = -mean, Rescale = 1/std over LFR feats."""
    import torch

    x = torch.cat(lfr_features(audios, None)).double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-3)
    fmt = lambda v: " ".join(f"{float(e):.6g}" for e in v)  # noqa: E731
    dim = x.shape[1]
    path.write_text(
        "<Nnet>\n"
        f"<Splice> {dim} {dim}\n[ 0 ]\n"
        f"<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {fmt(-mean)} ]\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {fmt(1.0 / std)} ]\n"
        "</Nnet>\n",
        encoding="utf-8",
    )


# -- model --------------------------------------------------------------------------------------


def config_for(variant: str) -> dict:
    enc = dict(ENCODERS[variant])
    p = DROPOUT[variant]
    enc.update(
        dropout_rate=p,
        positional_dropout_rate=p,
        attention_dropout_rate=p,
        input_layer="pe",
        pos_enc_class="SinusoidalPositionEncoder",
        normalize_before=True,
        kernel_size=11,
        sanm_shfit=0,
        selfattention_layer_type="sanm",
    )
    return {
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": enc,
        "model": "SenseVoiceSmall",
        "model_conf": {"length_normalized_loss": True, "sos": 1, "eos": 2, "ignore_id": -1},
        "tokenizer": "SentencepiecesTokenizer",
        "tokenizer_conf": {"bpemodel": None, "unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontend",
        "frontend_conf": {**frontend_conf(), "cmvn_file": None},
    }


def build_model(config: dict):
    tables, _ = _quiet_funasr()
    cls = tables.model_classes.get(config["model"])
    return cls(
        encoder=config["encoder"],
        encoder_conf=config["encoder_conf"],
        input_size=80 * 7,
        vocab_size=VOCAB_SIZE,
        **config["model_conf"],
    )


def configuration_json() -> dict:
    return {
        "framework": "pytorch",
        "task": "auto-speech-recognition",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "model_name_in_hub": {"ms": MODEL_ID, "hf": "FunAudioLLM/SenseVoiceSmall"},
        "file_path_metas": {
            "init_param": "model.pt",
            "config": "config.yaml",
            "tokenizer_conf": {"bpemodel": BPE_NAME},
            "frontend_conf": {"cmvn_file": "am.mvn"},
        },
        "dev_model": True,
    }


# -- fixture training ---------------------------------------------------------------------------

LID = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}


def target_ids(sp, entry: dict) -> list[int]:
    tags = [f"<|{entry['language']}|>", f"<|{entry['emotion']}|>", f"<|{entry['event']}|>"]
    tags.append("<|withitn|>" if entry["with_itn"] else "<|woitn|>")
    return [sp.piece_to_id(t) for t in tags] + list(sp.encode(entry["text"]))


def greedy_ids(model, feats, language_idx: list[int], textnorm_idx: list[int], rows=None) -> list[list[int]]:
    """FunASR's inference arithmetic (prompt queries, encoder, CTC argmax, collapse, drop blank).

    ``rows``: restrict the output layer to these vocabulary ids (training-time check); None = all.
    """
    import torch

    lengths = torch.tensor([f.shape[0] for f in feats])
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    lang = model.embed(torch.tensor(language_idx)[:, None])
    tn = model.embed(torch.tensor(textnorm_idx)[:, None])
    ee = model.embed(torch.tensor([[1, 2]])).repeat(x.shape[0], 1, 1)
    x = torch.cat((lang, ee, tn, x), dim=1)
    out, olens = model.encoder(x, lengths + 4)
    lo = model.ctc.ctc_lo
    if rows is None:
        arg = lo(out).argmax(-1)
    else:
        arg = rows[torch.nn.functional.linear(out, lo.weight[rows], lo.bias[rows]).argmax(-1)]
    res = []
    for i in range(x.shape[0]):
        seq = torch.unique_consecutive(arg[i, : int(olens[i])])
        res.append([int(t) for t in seq if int(t) != 0])
    return res


def with_itn(entry: dict, itn: bool) -> dict:
    return {**entry, "with_itn": itn}


def train_fixture(
    model, sp, feats, entries, seed: int, max_steps: int, script=None, clip_variants=None
) -> dict:
    """Train on the fixture clips with FunASR's SenseVoice objective until greedy CTC is exact.

    The objective is ``SenseVoiceSmall.forward``'s: CTC over the frames after the 4 prompts plus
    cross-entropy of the 4 prompt frames against the language/emotion/event/ITN tags, with FunASR's
    own ``encode()`` (which replaces the language prompt by ``auto`` 20 % of the time). For speed on
    CPU the output layer is evaluated only on ``rows`` (blank, every tag, the fixture's text pieces)
    instead of all 25055; afterwards the bias of every other row is lowered by ``UNUSED_BIAS_DROP``
    so those rows never win, and exactness is re-checked on the full vocabulary. Feature noise
    (sigma 0.05 in CMVN units) during training leaves a margin for other fbank implementations.

    ``script``: ``(train_feats, check_feats, entries)`` of the scripted-meeting lines
    (:func:`script_audio`): each step adds one training variant of every line, with or without ITN
    at random; the check runs every line's check variants (the first without ITN, the others with).
    ``clip_variants``: per fixture clip, features of the clip cut with VAD's margins
    (:func:`padded_clips`); each step uses the clip as stored or one of them.
    Deterministic for a given seed and thread count; stops at the second consecutive exact check
    (every 25 steps); with ``script``, after ``SCRIPT_STEPS`` (learning rate decayed) only the
    clips must be exact. Fails after ``max_steps``.
    """
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    pick = random.Random(seed)
    train_s, check_s, entries_s = script if script is not None else ([], [], [])
    targets = [target_ids(sp, e) for e in entries]
    targets_s = [[target_ids(sp, with_itn(e, itn)) for itn in (False, True)] for e in entries_s]
    check_x = [f for fs in check_s for f in fs]
    check_e = [with_itn(e, k > 0) for e, fs in zip(entries_s, check_s, strict=True) for k in range(len(fs))]
    check_t = [target_ids(sp, e) for e in check_e]
    every = [*targets, *(t for pair in targets_s for t in pair)]
    rows = torch.tensor(sorted({0, *range(SPECIAL_FIRST, VOCAB_SIZE), *(i for t in every for i in t)}))
    index = {int(r): k for k, r in enumerate(rows)}
    lang_true = [LID[e["language"]] for e in entries]
    tn = [14 if e["with_itn"] else 15 for e in entries]
    lang_check = [LID[e["language"]] for e in check_e]
    tn_check = [14 if e["with_itn"] else 15 for e in check_e]
    lo = model.ctc.ctc_lo
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    t0 = time.monotonic()
    history, exact_checks, step = [], 0, 0
    while step < max_steps:
        model.train()
        if script is not None:
            progress = min(step / SCRIPT_STEPS, 1.0)
            for group in opt.param_groups:
                group["lr"] = LR_END + 0.5 * (LR - LR_END) * (1 + math.cos(math.pi * progress))
        batch, batch_t = [], list(targets)
        for i, f in enumerate(feats):
            choices = [f, *(clip_variants[i] if clip_variants else ())]
            batch.append(choices[pick.randrange(len(choices))])
        for variants, pair in zip(train_s, targets_s, strict=True):
            batch.append(variants[pick.randrange(len(variants))])
            batch_t.append(pair[pick.randrange(2)])
        lengths = torch.tensor([f.shape[0] for f in batch])
        x = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True)
        x = x + 0.05 * torch.randn_like(x)
        ys = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(t) for t in batch_t], batch_first=True, padding_value=-1
        )
        ys_sub = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor([index[i] for i in t]) for t in batch_t], batch_first=True, padding_value=-1
        )
        ylens = torch.tensor([len(t) for t in batch_t])
        enc, olens = model.encode(x, lengths.clone(), ys.clone())
        logits = F.linear(enc, lo.weight[rows], lo.bias[rows])
        logp = logits.log_softmax(-1)
        ctc = F.ctc_loss(
            logp[:, 4:].transpose(0, 1),
            ys_sub[:, 4:].clamp_min(0),
            olens - 4,
            ylens - 4,
            blank=0,
            reduction="sum",
            zero_infinity=True,
        ) / len(batch_t)
        rich = F.cross_entropy(logits[:, :4].reshape(-1, len(rows)), ys_sub[:, :4].reshape(-1))
        loss = ctc + rich
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                given = greedy_ids(model, feats, lang_true, tn, rows)
                auto = greedy_ids(model, feats, [0] * len(feats), tn, rows)
                s_given = greedy_ids(model, check_x, lang_check, tn_check, rows) if check_x else []
                s_auto = greedy_ids(model, check_x, [0] * len(check_x), tn_check, rows) if check_x else []
            ok_given = sum(g == t for g, t in zip(given, targets, strict=True))
            ok_auto = sum(a == t for a, t in zip(auto, targets, strict=True))
            ok_s = sum(g == t == a for g, a, t in zip(s_given, s_auto, check_t, strict=True))
            elapsed = time.monotonic() - t0
            history.append([step, round(float(loss), 4), ok_given, ok_auto, ok_s, round(elapsed, 1)])
            eprint(
                f"step {step:4d} loss {float(loss):8.4f} exact {ok_given}/{len(targets)} auto "
                f"{ok_auto}/{len(targets)} script {ok_s}/{len(check_t)} {elapsed:5.1f}s"
            )
            all_ok = ok_given == ok_auto == len(targets) and (ok_s == len(check_t) or step >= SCRIPT_STEPS)
            exact_checks = exact_checks + 1 if all_ok else 0
            if exact_checks >= 2:
                break
    model.eval()
    with torch.no_grad():
        unused = torch.ones(VOCAB_SIZE, dtype=torch.bool)
        unused[rows] = False
        lo.bias[unused] -= UNUSED_BIAS_DROP
        given = greedy_ids(model, feats, lang_true, tn)
        auto = greedy_ids(model, feats, [0] * len(feats), tn)
        s_given = greedy_ids(model, check_x, lang_check, tn_check) if check_x else []
        s_auto = greedy_ids(model, check_x, [0] * len(check_x), tn_check) if check_x else []
    exact = given == targets and auto == targets
    script_exact = sum(g == t == a for g, a, t in zip(s_given, s_auto, check_t, strict=True))
    return {
        "steps": step,
        "seconds": round(time.monotonic() - t0, 1),
        "exact": exact,
        "rows_trained": len(rows),
        "unused_bias_drop": UNUSED_BIAS_DROP,
        "script_lines": len(entries_s),
        "script_check_clips": len(check_t),
        "script_exact": script_exact,
        "history": history,
        "targets": targets,
        "check_entries": check_e,
        "check_targets": check_t,
    }


def verify_with_funasr(out: Path, audios, entries, expected_texts: list[str]) -> list[str]:
    """Load the written folder with funasr.AutoModel and compare generate() text with the expected."""
    with contextlib.redirect_stdout(sys.stderr):
        from funasr import AutoModel

        m = AutoModel(
            model=str(out),
            device="cpu",
            disable_update=True,
            disable_pbar=True,
            disable_log=True,
            log_level="ERROR",
        )
    failures = []
    for audio, e, want in zip(audios, entries, expected_texts, strict=True):
        for lang in (e["language"], "auto"):
            with contextlib.redirect_stdout(sys.stderr):
                res = m.generate(input=audio, language=lang, use_itn=e["with_itn"], disable_pbar=True)
            got = res[0]["text"]
            if got != want:
                failures.append(f"{e['text']!r} language={lang}: got {got!r}, want {want!r}")
    return failures


# -- main ---------------------------------------------------------------------------------------


def build(out: Path, variant: str, seed: int, max_train_steps: int) -> None:
    import numpy as np
    import sentencepiece as spm
    import torch
    import yaml

    torch.set_num_threads(2)
    t0 = time.monotonic()
    if out.exists():
        raise SystemExit(f"{out} exists; give a new folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent if out.parent.exists() else None))
    try:
        bpe = tmp / BPE_NAME
        train_bpe(bpe, seed)
        sp = spm.SentencePieceProcessor(model_file=str(bpe))
        eprint(f"bpe: {sp.get_piece_size()} pieces ({time.monotonic() - t0:.1f} s)")

        audios, entries = fixture_audio(seed)
        script = script_audio(seed) if variant == "fixture" else ([], [], [])
        write_cmvn(tmp / "am.mvn", audios + [v[0] for v in script[0]])
        config = config_for(variant)
        with open(tmp / "config.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)
        (tmp / "configuration.json").write_text(json.dumps(configuration_json(), indent=2) + "\n")

        torch.manual_seed(seed)
        model = build_model(config)
        n_params = sum(p.numel() for p in model.parameters())
        meta = {"variant": variant, "seed": seed, "params": n_params, "config": config}
        if variant in ("tiny", "full"):
            with torch.no_grad():
                model.ctc.ctc_lo.bias[0] = BLANK_BIAS
            meta["blank_bias"] = BLANK_BIAS
        else:
            feats = lfr_features(audios, tmp / "am.mvn")
            t_feats = time.monotonic()
            script_feats = (
                [lfr_features(v, tmp / "am.mvn") for v in script[0]],
                [lfr_features(v, tmp / "am.mvn") for v in script[1]],
                script[2],
            )
            clip_variants = [lfr_features(v, tmp / "am.mvn") for v in padded_clips(audios, seed)]
            eprint(f"script: {len(script[2])} lines, features {time.monotonic() - t_feats:.1f} s")
            result = train_fixture(
                model, sp, feats, entries, seed, max_train_steps, script_feats, clip_variants
            )
            if not result["exact"]:
                raise SystemExit(
                    f"fixture training did not reach exact transcription in {result['seconds']} s "
                    f"({result['steps']} steps): {result['history'][-1]}"
                )
            expected = [sp.decode(t) for t in result["targets"]]
            meta["training"] = {
                k: v for k, v in result.items() if k not in ("targets", "check_entries", "check_targets")
            }
            arrays = {f"audio_{i}": a for i, a in enumerate(audios)}
            clips = []
            for i, (e, t, raw) in enumerate(zip(entries, result["targets"], expected, strict=True)):
                clips.append({"key": f"audio_{i}", **e, "token_ids": t, "raw_text": raw})
            np.savez(
                tmp / "fixture_clips.npz",
                **arrays,
                sample_rate=np.int32(SAMPLE_RATE),
                meta=np.array(json.dumps(clips, ensure_ascii=False)),
            )
        model.eval()
        torch.save(model.state_dict(), tmp / "model.pt")
        if variant == "fixture":
            failures = verify_with_funasr(tmp, audios, entries, expected)
            if failures:
                raise SystemExit(
                    "funasr AutoModel does not reproduce the fixture:\n  " + "\n  ".join(failures)
                )
            meta["verified_with_funasr_generate"] = True
            check_audio = [a for variants in script[1] for a in variants]
            wrong = verify_with_funasr(
                tmp, check_audio, result["check_entries"], [sp.decode(t) for t in result["check_targets"]]
            )
            # each check clip runs with its language and with auto: 2 runs per clip
            meta["training"]["script_funasr_runs_wrong"] = len(wrong)
            eprint(
                f"script check variants exact: {result['script_exact']}/{len(check_audio)}; funasr "
                f"generate wrong in {len(wrong)}/{2 * len(check_audio)} runs, e.g. {wrong[:3]}"
            )
        meta["build_seconds"] = round(time.monotonic() - t0, 1)
        (tmp / "dev_meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.chmod(0o755)
        tmp.rename(out)
        eprint(f"wrote {out}: {variant}, {n_params / 1e6:.2f} M params, {meta['build_seconds']} s")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export_scripts.sensevoice_dev", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", required=True, type=Path, help="new folder to write (hub layout)")
    p.add_argument("--variant", required=True, choices=sorted(ENCODERS))
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument(
        "--max-train-steps", type=int, default=MAX_TRAIN_STEPS, help="fixture: fail if not exact by then"
    )
    args = p.parse_args(argv)
    build(args.out.resolve(), args.variant, args.seed, args.max_train_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
