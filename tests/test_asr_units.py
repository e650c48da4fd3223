"""Pure parts of ASR: language codes, vocabulary and tags, detokenizing, CTC greedy search, forced
alignment and token times (``speechlib.languages``, ``speechlib.tokens``, ``speechlib.ctc``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from export_scripts.common import EXPORT_PYTHON
from speechlib import ctc
from speechlib.languages import (
    LANGUAGE_PROMPT,
    SUPPORTED,
    TEXTNORM_PROMPT,
    language_prompt,
    normalize_language,
)
from speechlib.tokens import SPACE, Vocabulary, detokenize, strip_tags, tag_kind

REPO = Path(__file__).resolve().parents[1]

# -- languages --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, expected",
    [
        ("zh", "zh"),
        ("zh-CN", "zh"),
        ("cmn", "zh"),
        ("ZH_cn", "zh"),
        ("yue", "yue"),
        ("zh-HK", "yue"),
        ("en", "en"),
        ("en-US", "en"),
        ("en-gb", "en"),
        ("ja", "ja"),
        ("ko", "ko"),
        ("auto", "auto"),
        ("", "auto"),
        (None, "auto"),
        (" Auto ", "auto"),
    ],
)
def test_language_codes(code, expected):
    assert normalize_language(code) == expected


@pytest.mark.parametrize("code", ["fr", "de-DE", "en-", "zh-TW", "xx", "nospeech", "english"])
def test_unknown_language_lists_supported_codes(code):
    with pytest.raises(ValueError) as exc:
        normalize_language(code)
    message = str(exc.value)
    assert repr(code) in message
    for supported in SUPPORTED:
        assert supported in message


def _funasr_sensevoice_dicts() -> dict[str, dict]:
    """``self.lid_dict`` and ``self.textnorm_dict`` as FunASR's SenseVoiceSmall defines them (read
    from its source in the export environment, never imported: it needs torch)."""
    import ast

    (source,) = (REPO / ".envs" / "export" / "lib").glob(
        "python3*/site-packages/funasr/models/sense_voice/model.py"
    )
    found = {}
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            if node.targets[0].attr in ("lid_dict", "textnorm_dict"):
                found[node.targets[0].attr] = ast.literal_eval(node.value)
    return found


@pytest.mark.export
def test_prompt_indices_are_sensevoices():
    """Our prompt-embedding indices (what the ONNX ``language``/``textnorm`` inputs take) are FunASR's."""
    theirs = _funasr_sensevoice_dicts()
    assert LANGUAGE_PROMPT == theirs["lid_dict"]
    assert {c: language_prompt(c) for c in theirs["lid_dict"] if c != "nospeech"} == {
        c: i for c, i in theirs["lid_dict"].items() if c != "nospeech"
    }
    assert TEXTNORM_PROMPT == {
        True: theirs["textnorm_dict"]["withitn"],
        False: theirs["textnorm_dict"]["woitn"],
    }


# -- vocabulary -------------------------------------------------------------------------------------

PIECES = [
    "<unk>", "<s>", "</s>", f"{SPACE}hello", f"{SPACE}wor", "ld", ",", "你", "好", SPACE,
    "<|zh|>", "<|en|>", "<|yue|>", "<|nospeech|>",
    "<|HAPPY|>", "<|NEUTRAL|>", "<|EMO_UNKNOWN|>",
    "<|Speech|>", "<|BGM|>", "<|Event_UNK|>", "<|withitn|>", "<|woitn|>", "<|dev_24886|>",
    "<0xE4>", "<0xB8>", "<0x80>", f"{SPACE}a",
]  # fmt: skip


def ids(*pieces):
    return [PIECES.index(p) for p in pieces]


def test_tags_are_classified_by_their_strings():
    assert tag_kind("<|en|>") == "language" and tag_kind("<|nospeech|>") == "language"
    assert tag_kind("<|SURPRISED|>") == "emotion" and tag_kind("<|EMO_UNKNOWN|>") == "emotion"
    assert tag_kind("<|Laughter|>") == "event" and tag_kind("<|Event_UNK|>") == "event"
    assert tag_kind("<|woitn|>") == "itn"
    assert tag_kind("<|dev_24886|>") == "other"
    assert tag_kind("hello") is None and tag_kind("<unk>") is None and tag_kind("<|") is None


def test_decode_splits_tags_and_text():
    vocab = Vocabulary(PIECES)
    seq = ids("<|en|>", "<|NEUTRAL|>", "<|Speech|>", "<|withitn|>", f"{SPACE}hello", ",", f"{SPACE}wor", "ld")
    d = vocab.decode(seq)
    assert (d.language, d.emotion, d.event, d.itn) == ("en", "NEUTRAL", "Speech", True)
    assert d.text == "hello, world"
    assert d.text_positions == [4, 5, 6, 7]
    assert d.text_ids == seq[4:]
    zh = vocab.decode(ids("<|zh|>", "<|HAPPY|>", "<|BGM|>", "<|woitn|>", "你", "好"))
    assert (zh.language, zh.emotion, zh.event, zh.itn, zh.text) == ("zh", "HAPPY", "BGM", False, "你好")
    # No tags at all (a random model): empty fields, the text still decodes.
    bare = vocab.decode(ids(f"{SPACE}a", "<|dev_24886|>", f"{SPACE}a"))
    assert (bare.language, bare.emotion, bare.event, bare.itn, bare.text) == ("", "", "", None, "a a")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([len(PIECES)])


def test_vocabulary_from_json(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps(PIECES))
    (tmp_path / "dict.json").write_text(json.dumps({str(i): p for i, p in enumerate(PIECES)}))
    for name in ("list.json", "dict.json"):
        vocab = Vocabulary.from_json(tmp_path / name)
        assert vocab.pieces == PIECES and vocab.id_of("<|en|>") == PIECES.index("<|en|>")


def test_detokenize_like_sentencepiece():
    assert detokenize([f"{SPACE}hello", f"{SPACE}wor", "ld"]) == "hello world"
    assert detokenize(["<0xE4>", "<0xB8>", "<0x80>", "好"]) == "一好"
    assert detokenize([SPACE, "a"]) == "a"
    assert detokenize([]) == ""
    assert strip_tags("<|en|><|NEUTRAL|><|Speech|><|woitn|> hello world ") == "hello world"


def test_detokenize_equals_sentencepiece_decode(tmp_path):
    import sentencepiece as spm  # installed in the serving env (requirements/serve.txt)

    corpus = tmp_path / "corpus.txt"
    rng = np.random.default_rng(0)
    words = ["hello", "world", "meeting", "notes", "你好", "世界", "会议", "2024", "ok,", "yes."]
    corpus.write_text("\n".join(" ".join(rng.choice(words, 6)) for _ in range(300)), encoding="utf-8")
    prefix = tmp_path / "bpe"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=330, model_type="bpe", minloglevel=2,
        user_defined_symbols=["<|en|>", "<|NEUTRAL|>", "<|Speech|>", "<|woitn|>"], byte_fallback=True,
    )  # fmt: skip
    sp = spm.SentencePieceProcessor(model_file=str(prefix) + ".model")
    vocab = Vocabulary([sp.id_to_piece(i) for i in range(sp.get_piece_size())])
    tags = [sp.piece_to_id(t) for t in ("<|en|>", "<|NEUTRAL|>", "<|Speech|>", "<|woitn|>")]
    for text in ["hello world", "会议 notes 2024", "ok, yes. 世界", "zebra ü"]:
        text_ids = sp.encode(text)
        assert vocab.decode(text_ids).text == sp.decode(text_ids).strip()
        # With SenseVoice's leading tags, FunASR's text with tags stripped equals ours.
        assert vocab.decode(tags + text_ids).text == strip_tags(sp.decode(tags + text_ids))
    for _ in range(50):  # random id sequences (what a random model emits)
        seq = [int(i) for i in rng.integers(3, sp.get_piece_size(), rng.integers(0, 12))]
        assert vocab.decode(seq).text == strip_tags(sp.decode(seq)), [sp.id_to_piece(i) for i in seq]


# -- CTC --------------------------------------------------------------------------------------------


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    frames = [0, 3, 3, 0, 3, 5, 5, 5, 0, 0, 7]
    logits = np.eye(8, dtype=np.float32)[frames]
    token_ids, starts = ctc.greedy_decode(logits)
    assert token_ids.tolist() == [3, 3, 5, 7] and starts.tolist() == [1, 4, 5, 10]
    assert ctc.greedy_decode(np.zeros((0, 8), np.float32))[0].size == 0


def test_log_softmax_rows_sum_to_one():
    x = np.random.default_rng(0).normal(0, 5, (7, 11)).astype(np.float32)
    lp = ctc.log_softmax(x)
    assert lp.dtype == np.float32
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("blank", [0, 3])
def test_boosted_log_probs_equal_the_full_width_computation_bit_for_bit(blank):
    """The chunked, columns-only path of ``align_token_times`` equals
    ``boost_blank(log_softmax(x))[:, columns]`` exactly, across chunk edges and with tied maxima
    (integer logits make ties, where blank must be boosted only when it is the *first* maximum)."""
    rng = np.random.default_rng(5)
    cases = 0
    for T in (0, 1, 15, 16, 17, 40):
        for values in ("normal", "integers"):
            if values == "normal":
                x = rng.normal(0, 4, (T, 50)).astype(np.float32)
            else:  # small integers: many tied maxima; on some rows blank is (one of) the maxima
                x = rng.integers(-3, 3, (T, 50)).astype(np.float32)
                rows = rng.random(T) < 0.5
                x[rows, blank] = x[rows].max(axis=-1)
            labels = rng.integers(0, 50, 6)
            columns = ctc.extended_labels(labels[labels != blank], blank)
            want = ctc.boost_blank(ctc.log_softmax(x), blank)[:, columns]
            got = ctc.boosted_log_probs(x, columns, blank, chunk_frames=16)
            assert got.dtype == np.float32 and got.shape == want.shape
            assert np.array_equal(got, want), (T, values)
            cases += int(T > 0)
    assert cases == 10


def test_align_token_times_matches_the_reference_path():
    """``align_token_times`` (columns only) places tokens exactly where the reference computation
    (full log-softmax, boost, ``forced_align``) does."""
    rng = np.random.default_rng(6)
    for trial in range(20):
        T = int(rng.integers(5, 60))
        logits = rng.normal(0, 3, (T, 30)).astype(np.float32)
        targets = [int(v) for v in rng.integers(1, 30, int(rng.integers(1, 6)))]
        path = ctc.forced_align(ctc.boost_blank(ctc.log_softmax(logits)), targets)
        spans = ctc.token_spans(path)
        if len(spans) != len(targets):
            continue
        want = ctc.span_times_ms(spans, T)
        assert np.array_equal(ctc.align_token_times(logits, targets), want), trial


def brute_force_best_alignment(lp, targets, blank=0):
    """Best CTC path by enumerating every label sequence of length T (tiny cases only)."""
    import itertools

    T, V = lp.shape
    best, best_path = -np.inf, None
    for path in itertools.product(range(V), repeat=T):
        collapsed = [p for i, p in enumerate(path) if (i == 0 or p != path[i - 1])]
        if [p for p in collapsed if p != blank] != list(targets):
            continue
        score = sum(lp[t, p] for t, p in enumerate(path))
        if score > best + 1e-9:
            best, best_path = score, path
    return best, best_path


def test_forced_align_is_the_best_path():
    rng = np.random.default_rng(1)
    for trial in range(30):
        T = int(rng.integers(3, 7))
        lp = ctc.log_softmax(rng.normal(0, 2, (T, 4)).astype(np.float32))
        targets = [int(x) for x in rng.integers(1, 4, int(rng.integers(1, 3)))]
        best, _ = brute_force_best_alignment(lp, targets)
        if not np.isfinite(best):
            continue
        path = ctc.forced_align(lp, targets)
        assert [s.token for s in ctc.token_spans(path)] == targets
        score = float(sum(lp[t, p] for t, p in enumerate(path)))
        assert score == pytest.approx(best, abs=1e-4), (trial, path)


def test_forced_align_edge_cases():
    lp = ctc.log_softmax(np.zeros((4, 3), np.float32))
    assert ctc.forced_align(lp, []).tolist() == [0, 0, 0, 0]
    assert ctc.forced_align(lp[:0], [1]).size == 0
    # Repeated labels need a blank between them.
    path = ctc.forced_align(lp[:3], [1, 1])
    assert path.tolist() == [1, 0, 1]


def test_token_times_follow_funasr_formula():
    # speech frames: blank, a, a, blank, b, blank  (60 ms each)
    spans = ctc.token_spans(np.array([0, 5, 5, 0, 6, 0]))
    assert spans == [ctc.TokenSpan(5, 1, 3), ctc.TokenSpan(6, 4, 5)]
    assert ctc.span_times_ms(spans, 6).tolist() == [[30, 150], [210, 270]]
    # The first frame starts at 0 (not -30); the last ends at 60 T - 30.
    assert ctc.span_times_ms([ctc.TokenSpan(5, 0, 6)], 6).tolist() == [[0, 330]]


def test_align_token_times_on_peaky_logits():
    frames = [0, 0, 3, 0, 0, 4, 4, 0, 5, 0]
    logits = (np.eye(6, dtype=np.float32)[frames] * 8.0).astype(np.float32)
    times = ctc.align_token_times(logits, [3, 4, 5])
    assert times.tolist() == [[90, 150], [270, 390], [450, 510]]
    assert ctc.align_token_times(logits, []).shape == (0, 2)


def test_word_times_merge_like_funasr_post():
    pieces = [f"{SPACE}hel", "lo", SPACE, "你", "好", ",", f"{SPACE}ok"]
    times = np.array([[0, 60], [60, 120], [120, 130], [150, 210], [210, 270], [270, 280], [300, 360]])
    words, stamps = ctc.word_times(pieces, times)
    # FunASR keeps the first piece as is (its "▁" too), so "lo" does not join it; later words do.
    assert words == [f"{SPACE}hel", "lo", "你", "好", ",", "ok"]
    assert stamps == [[0, 60], [60, 120], [150, 210], [210, 270], [270, 280], [300, 360]]
    words, stamps = ctc.word_times([f"{SPACE}ok", f"{SPACE}hel", "lo"], times[:3])
    assert words == ["▁ok", "hello"] and stamps == [[0, 60], [60, 130]]


ALIGN_SCRIPT = r"""
import importlib.util, json, sys
import numpy as np, torch
path = sys.argv[1]
spec = importlib.util.spec_from_file_location("ctc_alignment", path)
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
data = np.load(sys.argv[2], allow_pickle=True)
out = []
for i in range(int(data["n"])):
    lp = torch.from_numpy(data[f"lp{i}"]).unsqueeze(0)
    tg = torch.from_numpy(data[f"tg{i}"]).long().unsqueeze(0)
    a = mod.ctc_forced_align(lp, tg, torch.tensor([lp.shape[1]]), torch.tensor([tg.shape[1]]))
    out.append(a[0].tolist())
json.dump(out, sys.stdout)
"""


@pytest.mark.export
def test_forced_align_equals_funasrs(tmp_path):
    """Our numpy Viterbi equals FunASR's own ``ctc_forced_align`` frame for frame on random inputs,
    including the blank boost FunASR applies first."""
    (site,) = (REPO / ".envs" / "export" / "lib").glob("python3*/site-packages")
    source = site / "funasr" / "models" / "sense_voice" / "utils" / "ctc_alignment.py"
    rng = np.random.default_rng(3)
    cases = {}
    n = 40
    for i in range(n):
        T, V = int(rng.integers(5, 80)), int(rng.integers(3, 30))
        logits = rng.normal(0, 3, (T, V)).astype(np.float32)
        logits[:, 0] += rng.uniform(0, 3)  # blank-heavy, like a trained model
        if i % 4 == 0:
            logits = np.round(logits)  # exact ties exercise the tie-breaking
        greedy, _ = ctc.greedy_decode(logits)
        targets = greedy if greedy.size else np.array([1])
        cases[f"lp{i}"] = ctc.boost_blank(ctc.log_softmax(logits))
        cases[f"tg{i}"] = targets.astype(np.int64)
    np.savez(tmp_path / "cases.npz", n=n, **cases)
    script = tmp_path / "align.py"
    script.write_text(ALIGN_SCRIPT)
    proc = subprocess.run(
        [str(EXPORT_PYTHON), str(script), str(source), str(tmp_path / "cases.npz")],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    theirs = json.loads(proc.stdout)
    for i in range(n):
        ours = ctc.forced_align(cases[f"lp{i}"], cases[f"tg{i}"]).tolist()
        assert ours == theirs[i], f"case {i}"


# -- serving.sensevoice: decoding one utterance's logits, runtime choice -----------------------------


def test_decode_utterance_parses_tags_and_times_text_tokens():
    from serving.sensevoice import PROMPT_FRAMES, decode_utterance

    vocab = Vocabulary(PIECES)
    prompt = ids("<|en|>", "<|NEUTRAL|>", "<|Speech|>", "<|woitn|>")
    speech = [0, 0] + ids(f"{SPACE}hello") * 2 + [0] + ids(f"{SPACE}wor", "ld") + [0, 0]
    logits = np.full((PROMPT_FRAMES + len(speech), len(PIECES)), -5.0, np.float32)
    for t, label in enumerate(prompt + speech):
        logits[t, label] = 5.0
    r = decode_utterance(logits, vocab)
    assert (r.text, r.language, r.emotion, r.event) == ("hello world", "en", "NEUTRAL", "Speech")
    assert r.tokens == [f"{SPACE}hello", f"{SPACE}wor", "ld"]
    assert r.token_ids.tolist() == ids(f"{SPACE}hello", f"{SPACE}wor", "ld")
    # speech frames: hello 2-3, wor 5, ld 6 (60 ms frames, FunASR's -30 ms offset)
    assert r.token_times_ms.tolist() == [[90, 210], [270, 330], [330, 390]]


def test_runtime_choice_fails_clearly(tmp_path):
    from serving.sensevoice import SenseVoice

    with pytest.raises(RuntimeError, match="missing model.ts"):
        SenseVoice(tmp_path, runtime="torchscript")
    with pytest.raises(ValueError, match="onnxruntime, torchscript"):
        SenseVoice(tmp_path, runtime="tensorrt")
    with pytest.raises(RuntimeError, match="missing model.onnx"):
        SenseVoice(tmp_path)


def test_length_groups_bound_padding():
    from serving.sensevoice import length_groups

    lengths = [50, 400, 60, 390, 55, 1000, 410]
    groups = length_groups(lengths, 0.25)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        longest = max(lengths[i] for i in g)
        assert 1 - sum(lengths[i] for i in g) / (len(g) * longest) <= 0.25
    assert [sorted(lengths[i] for i in g) for g in groups] == [[50, 55, 60], [390, 400, 410], [1000]]
    assert length_groups(lengths, 1.0) == [sorted(range(len(lengths)), key=lambda i: lengths[i])]
