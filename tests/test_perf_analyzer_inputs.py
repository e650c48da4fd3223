"""bench/perf_analyzer/*.json, perf_analyzer's ``--input-data`` files, stay valid for the models:

- they are what ``bench/perf_analyzer/make_inputs.py`` writes (byte for byte), ≤ 2 MB together;
- every tensor is an input of the model's config (all required ones present), its content fills its
  shape, samples are finite and in [-1, 1], LANGUAGE holds real language codes;
- every entry (every step of every vad_stream sequence) answers on a real tritonserver serving
  model_repository/, through the Triton client, with outputs of the expected shapes.

perf_analyzer itself cannot run here (its wheel needs glibc >= 2.38): this test sends what it would
send, one entry per request with the batch dimension 1 that ``-b 1`` adds.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from bench.perf_analyzer import make_inputs

HERE = Path(make_inputs.__file__).resolve().parent
MODELS = ("asr", "vad", "vad_stream", "segmentation", "speaker_embedding")
CONTROL = {"START", "END", "READY", "CORRID"}  # perf_analyzer drives a sequence's controls itself
NUMPY = {"TYPE_FP32": np.float32, "TYPE_INT32": np.int32, "TYPE_BOOL": np.bool_, "TYPE_STRING": np.object_}


def load(model: str) -> dict:
    return json.loads((HERE / f"{model}.json").read_text())


def requests_of(model: str) -> list[list[dict]]:
    """Entries grouped in sequences (one-entry groups for the models without sequences)."""
    data = load(model)["data"]
    return data if model == "vad_stream" else [[entry] for entry in data]


@pytest.fixture(scope="module")
def client(triton):
    """The session's tritonserver over model_repository/ as committed (shared with the other tests
    that serve the whole repository)."""
    c = grpcclient.InferenceServerClient(triton.ports.grpc_url)
    yield c
    c.close()


def config_inputs(client, model: str) -> dict[str, dict]:
    config = client.get_model_config(model, as_json=True)["config"]
    return {i["name"]: i for i in config["input"]}


def as_array(spec: dict, tensor: dict) -> np.ndarray:
    return np.asarray(tensor["content"], NUMPY[spec["data_type"]]).reshape(tensor["shape"])


def test_files_are_reproducible_and_small(tmp_path):
    assert make_inputs.main(["--check"]) == 0, "run python -m bench.perf_analyzer.make_inputs"
    sizes = {m: (HERE / f"{m}.json").stat().st_size for m in MODELS}
    assert sum(sizes.values()) <= 2_000_000, sizes
    assert sorted(p.stem for p in HERE.glob("*.json")) == sorted(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_entries_match_the_model_config(client, model):
    inputs = config_inputs(client, model)
    required = {n for n, i in inputs.items() if not i.get("optional")} - CONTROL
    groups = requests_of(model)
    assert groups and all(groups), f"{model}: no entries"
    shapes = set()
    for group in groups:
        peak = 0.0
        for entry in group:
            assert set(entry) <= set(inputs) - CONTROL, f"{model}: unknown inputs {set(entry) - set(inputs)}"
            assert required <= set(entry), f"{model}: missing {required - set(entry)}"
            for name, tensor in entry.items():
                spec = inputs[name]
                assert int(np.prod(tensor["shape"])) == len(tensor["content"]), (model, name)
                dims = [int(d) for d in spec["dims"]]
                assert len(tensor["shape"]) == len(dims), (model, name, tensor["shape"], dims)
                assert all(d == -1 or d == s for d, s in zip(dims, tensor["shape"], strict=True))
                x = as_array(spec, tensor)
                if spec["data_type"] == "TYPE_FP32":
                    assert np.isfinite(x).all() and np.abs(x).max() <= 1.0, (model, name)
                if name == "LANGUAGE":
                    assert set(x.ravel()) <= {"auto", "en", "zh", "ja", "ko", "yue"}, x
                if name in ("WAVEFORM", "AUDIO_CHUNK"):
                    shapes.add(tuple(tensor["shape"]))
                    peak = max(peak, float(np.abs(x).max()))
        assert peak > 0.05, f"{model}: a request (sequence) holds no speech"
    if model in ("asr", "vad", "vad_stream"):
        assert len(shapes) >= 2, f"{model}: one length only: {shapes}"


def infer(client, model: str, inputs: dict[str, dict], entry: dict, outputs: list[str], **seq):
    tensors = []
    for name, tensor in entry.items():
        x = as_array(inputs[name], tensor)[None]  # perf_analyzer -b 1 adds the batch dimension
        t = grpcclient.InferInput(name, list(x.shape), grpcclient.np_to_triton_dtype(x.dtype))
        t.set_data_from_numpy(x)
        tensors.append(t)
    result = client.infer(
        model, tensors, outputs=[grpcclient.InferRequestedOutput(o) for o in outputs], **seq
    )
    return {o: result.as_numpy(o) for o in outputs}


def test_asr_entries(client):
    inputs = config_inputs(client, "asr")
    for (entry,) in requests_of("asr"):
        out = infer(
            client, "asr", inputs, entry, ["TEXT", "DETECTED_LANGUAGE", "TOKEN_IDS", "TOKEN_TIMES_MS"]
        )
        assert out["TEXT"].shape == (1, 1) and out["DETECTED_LANGUAGE"].shape == (1, 1)
        n = out["TOKEN_IDS"].shape[1]
        assert out["TOKEN_IDS"].shape == (1, n) and out["TOKEN_TIMES_MS"].shape == (1, n, 2)
        seconds = entry["WAVEFORM"]["shape"][0] / make_inputs.SAMPLE_RATE
        assert (out["TOKEN_TIMES_MS"] <= seconds * 1000 + 60).all()


def test_vad_entries_find_the_speech(client):
    inputs = config_inputs(client, "vad")
    for (entry,) in requests_of("vad"):
        segments = infer(client, "vad", inputs, entry, ["SEGMENTS"])["SEGMENTS"]
        assert segments.ndim == 3 and segments.shape[0] == 1 and segments.shape[2] == 2
        assert segments.shape[1] >= 1, "real speech, no segment"
        seconds = entry["WAVEFORM"]["shape"][0] / make_inputs.SAMPLE_RATE
        assert (segments[0, :, 0] < segments[0, :, 1]).all() and segments.max() <= seconds * 1000 + 1


def test_vad_stream_sequences(client):
    inputs = config_inputs(client, "vad_stream")
    for steps in requests_of("vad_stream"):
        sequence_id = secrets.randbits(63) or 1
        events = []
        for i, step in enumerate(steps):
            out = infer(
                client,
                "vad_stream",
                inputs,
                step,
                ["EVENTS"],
                sequence_id=sequence_id,
                sequence_start=i == 0,
                sequence_end=i == len(steps) - 1,
            )["EVENTS"]
            assert out.ndim == 3 and out.shape[0] == 1 and out.shape[2] == 2
            events += out[0].tolist()
        assert any(start >= 0 for start, _ in events), f"no speech start in {events}"
        assert any(end >= 0 for _, end in events), f"the last step (END) closed no segment: {events}"


def test_segmentation_entries(client):
    inputs = config_inputs(client, "segmentation")
    for (entry,) in requests_of("segmentation"):
        scores = infer(client, "segmentation", inputs, entry, ["SCORES"])["SCORES"]
        assert scores.shape == (1, make_inputs.FRAMES, 7) and np.isfinite(scores).all()


def test_speaker_embedding_entries(client):
    inputs = config_inputs(client, "speaker_embedding")
    for (entry,) in requests_of("speaker_embedding"):
        speakers = entry["MASKS"]["shape"][0]
        emb = infer(client, "speaker_embedding", inputs, entry, ["EMBEDDINGS"])["EMBEDDINGS"]
        assert emb.ndim == 3 and emb.shape[:2] == (1, speakers) and emb.shape[2] >= 32
        assert np.isfinite(emb).all(), "every masked speaker speaks in the window: no NaN row"
