"""The ``asr`` and ``transcribe`` Triton models, served by a real tritonserver.

One server for the module, on a repository assembled here from the cached dev artifacts (so it does
not depend on what ``make models`` installed): ``asr`` = the trained tiny fixture, ``asr_tiny`` = the
tiny random SenseVoice (same config and model.py, renamed), ``vad`` = fsmn-VAD, ``transcribe`` = the BLS.

1. parity: token ids and text of the tiny random model equal FunASR's own PyTorch inference;
2. fixture: the trained utterances come back exactly (text and tags), token times agree with FunASR's
   ``output_timestamp=True`` (>= 98 % within one 60 ms frame, none beyond three);
3. batching is real (``asr_batched``: the GPU config's batching on CPU instances; the CPU config
   itself runs one utterance per call, faster on CPU), batched == single, non-empty outputs, clear
   errors that fail alone, and the ``transcribe`` BLS equals the client library's VAD -> ASR path.

FunASR references run in the export environment (``export_scripts/reference_asr.py``), cached by a
hash of the audio, the model files and the script under ``$INTRASCRIBE_CACHE/fixtures``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from export_scripts.common import EXPORT_PYTHON
from inference_client import TritonClient
from inference_client.asr import ASRClient, asr_inputs
from inference_client.audio import decode_audio
from inference_client.errors import InferenceError
from inference_client.metrics import batch_sizes, scrape
from serving.launcher import TritonServer
from speechlib import ctc
from speechlib.interfaces import ASR, SAMPLE_RATE, VAD, Transcribe
from speechlib.tokens import Vocabulary, strip_tags
from tests.audio import fixtures_dir, speak_file, write_wav
from tests.batching import send_mixed

REPO = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = REPO / "model_repository"
TINY = "asr_tiny"
TORCHSCRIPT = (
    "asr_torchscript"  # the fixture on the torchscript runtime (torch on CPU here, CUDA in the GPU image)
)
# the fixture with the GPU config's batching (configs/gpu.pbtxt on CPU instances): the CPU config runs
# one utterance per batch (faster on CPU), so batching is checked where it is used
BATCHED = "asr_batched"
# BATCHED with a 200 ms queue delay: requests sent together reliably share one execution, which the
# "bad input fails alone" test needs (at 5 ms a busy 2-core machine splits them)
BATCHED_WAIT = "asr_batched_wait"
PARITY_SENTENCES = [
    ("hello everyone, welcome to the meeting", "en-us"),
    ("我们明天下午开会", "cmn"),
    ("the quarterly numbers look good", "en-gb+f3"),
]


def run(coro):
    return asyncio.run(coro)


# -- the server -------------------------------------------------------------------------------------


def _artifact(name: str) -> Path:
    from export_scripts.build import artifact_dir

    return artifact_dir(name)


def _hub_source(name: str) -> Path:
    """The hub-layout folder (model.pt, config.yaml, BPE) a dev artifact was exported from."""
    from export_scripts import build
    from export_scripts.common import default_cache_root

    art = next(a for a in build.ARTIFACTS if a.name == name)
    return build.dev_source(art, (default_cache_root() / "models").expanduser().resolve())


def _add_model(
    repo: Path,
    name: str,
    source_model: str,
    files: Path | None,
    runtime: str | None = None,
    gpu_config: bool = False,
    queue_delay_us: int | None = None,
) -> None:
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    if gpu_config:  # its batching and parameters, on CPU instances
        config = (MODEL_REPOSITORY / source_model / "configs" / "gpu.pbtxt").read_text()
        assert "KIND_GPU" in config
        config = config.replace("KIND_GPU", "KIND_CPU")
    else:
        config = (MODEL_REPOSITORY / source_model / "config.pbtxt").read_text()
    if name != source_model:
        config = config.replace(f'name: "{source_model}"', f'name: "{name}"', 1)
    if queue_delay_us is not None:
        config, n = re.subn(
            r"max_queue_delay_microseconds: \d+", f"max_queue_delay_microseconds: {queue_delay_us}", config
        )
        assert n == 1, "the config has no dynamic_batching queue delay to change"
    if runtime is not None:
        default = 'key: "runtime" value: { string_value: "onnxruntime" }'
        assert default in config
        config = config.replace(default, f'key: "runtime" value: {{ string_value: "{runtime}" }}')
    (folder / "config.pbtxt").write_text(config)
    shutil.copy2(MODEL_REPOSITORY / source_model / "1" / "model.py", folder / "1" / "model.py")
    if files is not None:
        for f in files.iterdir():
            if f.is_file() and f.name != "model.py":
                (folder / "1" / f.name).symlink_to(f.resolve())


@pytest.fixture(scope="module")
def artifacts():
    return {
        "fixture": _artifact("sensevoice_fixture"),
        "tiny": _artifact("sensevoice_tiny"),
        "vad": _artifact("fsmn_vad"),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifacts):
    repo = tmp_path_factory.mktemp("asr_repository")
    _add_model(repo, ASR.NAME, ASR.NAME, artifacts["fixture"])
    _add_model(repo, TINY, ASR.NAME, artifacts["tiny"])
    _add_model(repo, TORCHSCRIPT, ASR.NAME, artifacts["fixture"], runtime="torchscript")
    _add_model(repo, BATCHED, ASR.NAME, artifacts["fixture"], gpu_config=True)
    _add_model(repo, BATCHED_WAIT, ASR.NAME, artifacts["fixture"], gpu_config=True, queue_delay_us=200_000)
    _add_model(repo, VAD.NAME, VAD.NAME, artifacts["vad"])
    _add_model(repo, Transcribe.NAME, Transcribe.NAME, None)
    with TritonServer(repo) as triton:
        yield triton


@pytest.fixture(scope="module")
def clips(artifacts):
    """The fixture's training clips: (audio, expected) with expected {text, language, emotion, event, with_itn}."""
    data = np.load(artifacts["fixture"] / "fixture_clips.npz", allow_pickle=False)
    assert int(data["sample_rate"]) == SAMPLE_RATE
    meta = json.loads(str(data["meta"]))
    assert len(meta) >= 5
    return [(np.asarray(data[e["key"]], np.float32), e) for e in meta]


async def _with_asr(server, fn):
    async with TritonClient(server.ports.grpc_url) as client:
        return await fn(ASRClient(client), client)


# -- FunASR references (export environment) ---------------------------------------------------------


def funasr_reference(
    model_dir: Path,
    wavs: list[Path],
    language: str = "auto",
    use_itn: bool = False,
    fixture_npz: Path | None = None,
) -> dict[str, dict]:
    """FunASR's result per input (cached by content hash): ``token_ids`` (tags included), raw ``text``,
    ``token_timestamps`` ([piece, start_ms, end_ms] per text token). Keys: the resolved wav paths,
    and ``fixture:<key>`` for each clip of ``fixture_npz`` (run with its own language and ITN flag)."""
    h = hashlib.sha256()
    for p in [*wavs, *([fixture_npz] if fixture_npz else []), REPO / "export_scripts" / "reference_asr.py"]:
        h.update(Path(p).read_bytes())
    for f in sorted(model_dir.iterdir()):
        if f.is_file() and f.suffix in (".pt", ".yaml", ".mvn", ".model"):
            h.update(f.name.encode() + f.read_bytes())
    h.update(f"{language}/{int(use_itn)}".encode())
    out = fixtures_dir() / f"funasr-asr-reference-{h.hexdigest()[:16]}.json"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        extra = ["--fixture-npz", str(fixture_npz)] if fixture_npz else []
        subprocess.run(
            [str(EXPORT_PYTHON), "-m", "export_scripts.reference_asr", "--model-dir", str(model_dir), "--out", str(tmp),
             "--language", language, "--use-itn", str(int(use_itn)), *extra, *map(str, wavs)],
            cwd=REPO, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        tmp.rename(out)
    files = json.loads(out.read_text())["files"]
    return {(k if k.startswith("fixture:") else str(Path(k).resolve())): v for k, v in files.items()}


# -- 1. parity with FunASR (tiny random model) -------------------------------------------------------


@pytest.mark.export
@pytest.mark.slow
def test_tiny_model_token_ids_and_text_equal_funasr(server, artifacts):
    vocab = Vocabulary.from_json(artifacts["tiny"] / "tokens.json")
    wavs = [speak_file(text, voice) for text, voice in PARITY_SENTENCES]
    noise = fixtures_dir() / "asr-parity-noise.wav"
    if not noise.exists():
        write_wav(noise, np.random.default_rng(0).normal(0, 0.05, SAMPLE_RATE * 3).astype(np.float32))
    wavs.append(noise)
    audios = [decode_audio(w) for w in wavs]
    compared = 0
    for language, use_itn in (("auto", True), ("en", False)):
        by_key = funasr_reference(_hub_source("sensevoice_tiny"), wavs, language, use_itn)
        reference = [by_key[str(Path(w).resolve())] for w in wavs]

        async def ours(asr, client, language=language, use_itn=use_itn):
            outs = []
            for a in audios:
                inputs = asr_inputs(a, language, use_itn)
                outs.append(await client.infer(TINY, inputs, [ASR.TEXT, ASR.TOKEN_IDS, ASR.DETECTED_LANGUAGE,
                                                             ASR.EMOTION, ASR.EVENT]))  # fmt: skip
            return outs

        results = run(_with_asr(server, ours))
        for wav, ref, out in zip(wavs, reference, results, strict=False):
            expected = vocab.decode(ref["token_ids"])
            got_ids = out[ASR.TOKEN_IDS].reshape(-1).tolist()
            assert got_ids == expected.text_ids, f"{wav.name} {language}: token ids differ"
            assert out[ASR.TEXT].reshape(-1)[0].decode() == strip_tags(ref["text"]) == expected.text
            tags = [out[n].reshape(-1)[0].decode() for n in (ASR.DETECTED_LANGUAGE, ASR.EMOTION, ASR.EVENT)]
            assert tags == [expected.language, expected.emotion, expected.event]
            compared += len(got_ids)
    assert compared > 0, "the tiny model produced no text tokens at all: parity would be vacuous"


# -- 2. the trained fixture -------------------------------------------------------------------------


@pytest.mark.slow
def test_fixture_utterances_come_back_exactly(server, clips):
    async def go(asr, client):
        given = [asr.transcribe(a, e["language"], e["with_itn"]) for a, e in clips]
        auto = [asr.transcribe(a, "auto", e["with_itn"]) for a, e in clips]
        return await asyncio.gather(*given), await asyncio.gather(*auto)

    given, auto = run(_with_asr(server, go))
    for results in (given, auto):
        for (audio, e), t in zip(clips, results, strict=False):
            assert (t.text, t.language, t.emotion, t.event) == (
                e["text"],
                e["language"],
                e["emotion"],
                e["event"],
            )
            assert t.tokens and all(
                0 <= k.start_ms <= k.end_ms <= len(audio) * 1000 // SAMPLE_RATE for k in t.tokens
            )
            starts = [k.start_ms for k in t.tokens]
            assert starts == sorted(starts)


@pytest.mark.export
@pytest.mark.slow
def test_fixture_token_times_equal_funasr_timestamps(server, clips, artifacts):
    reference = funasr_reference(
        _hub_source("sensevoice_fixture"), [], fixture_npz=artifacts["fixture"] / "fixture_clips.npz"
    )

    async def go(asr, client):
        return await asyncio.gather(*(asr.transcribe(a, e["language"], e["with_itn"]) for a, e in clips))

    ours = run(_with_asr(server, go))
    deltas = []
    for (_, e), t in zip(clips, ours, strict=False):
        ref = reference[f"fixture:{e['key']}"]
        assert ref["timestamp_error"] is None, ref["timestamp_error"]
        ref_tokens = ref["token_timestamps"]
        assert [k.text for k in t.tokens] == [p for p, _, _ in ref_tokens], e["text"]
        deltas += [
            max(abs(k.start_ms - s), abs(k.end_ms - f))
            for k, (_, s, f) in zip(t.tokens, ref_tokens, strict=False)
        ]
    deltas = np.array(deltas)
    within_one = float(np.mean(deltas <= ctc.FRAME_MS))
    print(
        f"token times vs FunASR: {len(deltas)} tokens, {np.mean(deltas == 0):.1%} identical, "
        f"{within_one:.1%} within one frame, max {deltas.max()} ms"
    )
    assert within_one >= 0.98 and deltas.max() <= 3 * ctc.FRAME_MS


# -- 3. batching, errors, transcribe ----------------------------------------------------------------


@pytest.mark.slow
def test_batching_is_real_and_batched_equals_single(server, clips):
    """16 concurrent requests to the batching configuration (the GPU config's, on CPU instances) run
    in network calls of more than one utterance on average, and each result equals the CPU
    configuration's answer to the same clip sent alone."""
    waves = [clips[i % len(clips)] for i in range(16)]

    async def singles(asr, client):
        return [await asr.transcribe(a, "auto", e["with_itn"]) for a, e in clips]

    single = run(_with_asr(server, singles))
    before = batch_sizes(scrape(server.ports.metrics_url), BATCHED)

    async def concurrent(_, client):
        batched = ASRClient(client, model=BATCHED)
        return await asyncio.gather(*(batched.transcribe(a, "auto", e["with_itn"]) for a, e in waves))

    batched = run(_with_asr(server, concurrent))
    delta = batch_sizes(scrape(server.ports.metrics_url), BATCHED) - before
    assert delta.mean > 1.0, f"network ran {delta.count} calls with mean batch {delta.mean:.2f}: no batching"
    for i, t in enumerate(batched):
        assert t.text and t.tokens, "empty output"
        assert t == single[i % len(clips)], f"request {i}: batched result differs from single"


def test_cpu_config_runs_one_utterance_per_call(server, clips):
    """The CPU configuration does not batch (measured faster on CPU): concurrent requests still all
    succeed, and each network call holds one utterance."""
    before = batch_sizes(scrape(server.ports.metrics_url), ASR.NAME)

    async def concurrent(asr, client):
        return await asyncio.gather(*(asr.transcribe(a, "auto", e["with_itn"]) for a, e in clips * 2))

    results = run(_with_asr(server, concurrent))
    delta = batch_sizes(scrape(server.ports.metrics_url), ASR.NAME) - before
    assert all(t.text for t in results)
    assert delta.count == 2 * len(clips) and delta.mean == 1.0, (delta.count, delta.mean)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((1, 0), np.float32), "empty"),
        (np.array([[0.1, np.nan] * 4000], np.float32), "NaN"),
        (np.zeros((1, SAMPLE_RATE * 31), np.float32), "at most 30 s"),
        (np.zeros((1, 100), np.float32), "at least 400"),
        (np.zeros((1, SAMPLE_RATE), np.float64), "FP32"),
        ("language:fr-FR", "supported: auto, zh"),
    ],
    ids=["empty", "nan", "too-long", "too-short", "fp64", "bad-language"],
)
def test_bad_input_fails_alone(server, clips, bad, message):
    """A bad request in the same execution as good ones (the batching config with a longer queue
    delay, ``asr_batched_wait``; the counters prove they shared it) gets its own error, and the good ones their exact text. A wrong
    dtype never reaches a batch: Triton refuses it against the config."""
    audio, entry = clips[0]
    good = [asr_inputs(audio, "auto", entry["with_itn"]) for _ in range(3)]
    if isinstance(bad, str):
        bad_inputs = asr_inputs(audio, "auto", entry["with_itn"])
        bad_inputs[ASR.LANGUAGE] = np.array([[bad.split(":", 1)[1].encode()]], dtype=np.object_)
    else:  # the same optional inputs as the good ones: requests with other inputs never share a batch
        bad_inputs = {**good[0], ASR.WAVEFORM: bad}
    run = send_mixed(server, BATCHED_WAIT, good, bad_inputs, [ASR.TEXT])
    if isinstance(bad, np.ndarray) and bad.dtype != np.float32:
        assert run.refused_before_batching, run
    else:
        assert run.shared_one_execution, f"never shared one execution with the good requests: {run}"
    assert isinstance(run.bad, InferenceError), run.bad
    assert message.lower() in str(run.bad).lower(), str(run.bad)
    for g in run.good:
        assert not isinstance(g, Exception), g
        assert g[ASR.TEXT].reshape(-1)[0].decode() == entry["text"]


def test_unknown_language_is_refused_by_client_and_server(server, clips):
    audio, _ = clips[0]

    async def go(asr, client):
        with pytest.raises(ValueError, match="supported: auto, zh"):
            await asr.transcribe(audio, language="xx")
        with pytest.raises(ValueError, match="supported"):
            await asr.transcribe_on_server(audio, language="klingon")
        inputs = {
            Transcribe.WAVEFORM: audio[None],
            Transcribe.LANGUAGE: np.array([[b"fr"]], dtype=np.object_),
        }
        return await asyncio.gather(
            client.infer(Transcribe.NAME, inputs, [Transcribe.TEXTS]), return_exceptions=True
        )

    (result,) = run(_with_asr(server, go))
    assert isinstance(result, InferenceError) and "supported: auto, zh" in str(result)


@pytest.mark.slow
def test_transcribe_bls_equals_client_vad_asr_path(server, clips):
    # ~20 s: the fixture clips in turn with 1.2 s silences between them (VAD cuts them apart).
    gap = np.zeros(int(SAMPLE_RATE * 1.2), np.float32)
    parts = []
    for audio, _ in clips[:8]:
        parts += [gap, audio]
    recording = np.concatenate(parts + [gap])
    assert len(recording) <= Transcribe.MAX_SECONDS * SAMPLE_RATE

    async def go(asr, client):
        return await asyncio.gather(asr.transcribe_segments(recording), asr.transcribe_on_server(recording))

    client_path, server_path = run(_with_asr(server, go))
    assert len(client_path) >= 4, client_path
    assert [(s.start_ms, s.end_ms) for s in server_path] == [(s.start_ms, s.end_ms) for s in client_path]
    for c, s in zip(client_path, server_path, strict=False):
        assert (s.text, s.transcript.language, s.transcript.emotion, s.transcript.event) == (
            c.text, c.transcript.language, c.transcript.emotion, c.transcript.event,
        )  # fmt: skip
        if c.transcript.tokens:  # client token times count from the recording's start
            assert c.start_ms - ctc.FRAME_MS <= c.transcript.tokens[0].start_ms <= c.end_ms
    # VAD cuts with other margins than the fixture was trained on, so only some texts come back exactly.
    texts = {e["text"] for _, e in clips[:8]}
    assert all(s.text for s in server_path) and any(s.text in texts for s in server_path), [
        s.text for s in server_path
    ]


def test_transcribe_rejects_too_long_audio(server):
    async def go(asr, client):
        with pytest.raises(ValueError, match="at most 60 s"):
            await asr.transcribe_on_server(np.zeros(SAMPLE_RATE * 61, np.float32))
        inputs = {Transcribe.WAVEFORM: np.zeros((1, SAMPLE_RATE * 61), np.float32)}
        return await asyncio.gather(
            client.infer(Transcribe.NAME, inputs, [Transcribe.TEXTS]), return_exceptions=True
        )

    (result,) = run(_with_asr(server, go))
    assert isinstance(result, InferenceError) and "at most 60 s" in str(result)


def test_output_shapes_hold_for_any_token_count(server, clips):
    """Silence or noise may decode to no text tokens at all: the arrays are then empty, not missing."""
    rng = np.random.default_rng(5)
    quiet = [np.zeros(SAMPLE_RATE, np.float32), rng.normal(0, 0.01, SAMPLE_RATE // 2).astype(np.float32)]

    async def go(asr, client):
        outs = [
            await client.infer(ASR.NAME, asr_inputs(a, "auto", True), None) for a in [*quiet, clips[0][0]]
        ]
        return outs

    for out in run(_with_asr(server, go)):
        n = out[ASR.TOKEN_IDS].shape[-1]
        assert out[ASR.TEXT].shape == (1, 1) and out[ASR.DETECTED_LANGUAGE].shape == (1, 1)
        assert out[ASR.TOKENS].shape == (1, n) and out[ASR.TOKEN_TIMES_MS].shape == (1, n, 2)
        assert out[ASR.TOKEN_IDS].dtype == np.int32 and out[ASR.TOKEN_TIMES_MS].dtype == np.int32
    assert out[ASR.TOKEN_IDS].size > 0  # the last one is a fixture utterance


def test_torchscript_runtime_equals_onnxruntime(server, clips):
    """The same fixture served on the torchscript runtime gives the same tokens, times and tags."""

    async def go(asr, client):
        ts = ASRClient(client, model=TORCHSCRIPT)
        ours = await asyncio.gather(*(asr.transcribe(a, e["language"], e["with_itn"]) for a, e in clips))
        theirs = await asyncio.gather(*(ts.transcribe(a, e["language"], e["with_itn"]) for a, e in clips))
        return ours, theirs

    ours, theirs = run(_with_asr(server, go))
    for (_, e), o, t in zip(clips, ours, theirs, strict=True):
        assert t.text == o.text == e["text"]
        assert (t.language, t.emotion, t.event) == (o.language, o.emotion, o.event)
        assert [(k.id, k.start_ms, k.end_ms) for k in t.tokens] == [
            (k.id, k.start_ms, k.end_ms) for k in o.tokens
        ]
