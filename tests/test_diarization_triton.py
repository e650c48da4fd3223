"""The ``segmentation`` and ``speaker_embedding`` Triton models and the client's global diarization
pipeline (``inference_client.diarization``), served by a real tritonserver.

* Parity per stage with pyannote.audio's own ``SpeakerDiarization`` on the dev weights (the export
  environment computes the reference): segmentation scores, embeddings (NaN exactly where pyannote
  skips), end-to-end DER between the two outputs.
* The trained tiny fixture recovers the turns of a held-out synthetic meeting through our pipeline.
* Real batching, non-empty outputs, bad inputs, streaming input, speaker-count constraints.
* Memory does not grow with the length of the audio (slow).

DER here is :func:`tests.diarization_helpers.frame_der` (10 ms frames, optimal speaker mapping, no
collar, overlaps scored).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from export_scripts.common import EXPORT_PYTHON
from inference_client import TritonClient
from inference_client.audio import decode_audio
from inference_client.diarization import DiarizationClient, PipelineSettings
from inference_client.errors import InvalidRequestError
from inference_client.metrics import InferenceCounts, batch_sizes, counts_after, inference_counts, scrape
from serving.diarization import WeSpeakerFbank
from speechlib.diarization.masks import embedding_masks, inactive_speakers, min_num_frames
from speechlib.diarization.powerset import powerset_to_multilabel
from speechlib.interfaces import SAMPLE_RATE, Segmentation, SpeakerEmbedding
from tests.audio import pyannote_sample
from tests.diarization_helpers import (
    DIARIZATION_MODELS,
    MODEL_REPOSITORY,
    REPO_ROOT,
    as_tuples,
    diarization_repository,
    diarize_with,
    frame_der,
    meeting_sources,
    trained_fixture_artifacts,
    windows_of,
)

REFERENCE_MODULE = "export_scripts.reference_diarization"
WINDOW = Segmentation.WINDOW_SAMPLES
FRAMES = Segmentation.NUM_FRAMES


def run(coro):
    return asyncio.run(coro)


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def build_info_source(model: str = SpeakerEmbedding.NAME) -> Path:
    """The hub-layout folder the installed model was exported from (for the reference pipeline)."""
    info = MODEL_REPOSITORY / model / "1" / "BUILD_INFO.json"
    if not info.is_file():
        pytest.fail(f"{info} missing: run `make models` (export_scripts.build dev)", pytrace=False)
    return Path(json.loads(info.read_text())["source"])


# --------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def triton_diarization(triton_models):
    """A tritonserver with just ``segmentation`` and ``speaker_embedding`` (the installed dev models)."""
    return triton_models(*DIARIZATION_MODELS)


@pytest.fixture(scope="module")
def settings() -> PipelineSettings:
    return PipelineSettings.from_dir(MODEL_REPOSITORY / SpeakerEmbedding.NAME / "1")


@pytest.fixture(scope="module")
def sample():
    path, turns = pyannote_sample()
    return decode_audio(path), turns


@pytest.fixture(scope="module")
def meetings():
    """Synthetic meetings with 2, 3 and 4 speakers (>= 10 % non-speech, >= 1 overlap): (path, turns)."""
    from tests.meetings import synthetic_meeting

    return {n: synthetic_meeting(n, seconds=45.0, seed=10 + n) for n in (2, 3, 4)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sample, meetings):
    """pyannote.audio's own pipeline on the dev weights (export env), per file stem: its per-stage
    outputs as ``export_scripts.reference_diarization`` records them (docs/diarization-export.md)."""
    from export_scripts.reference_diarization import load

    out = tmp_path_factory.mktemp("reference_diarization") / "reference.npz"
    wavs = [str(pyannote_sample()[0])] + [str(p) for p, _ in meetings.values()]
    cmd = [str(EXPORT_PYTHON), "-m", REFERENCE_MODULE, "--model-dir", str(build_info_source())]
    cmd += ["--out", str(out), *wavs]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"reference_diarization failed:\n{proc.stderr[-4000:]}"
    return {Path(str(r["wav"])).stem: r for r in load(out)}


def reference_turns(rec: dict, exclusive: bool = False) -> list[tuple[float, float, str]]:
    rows = rec["exclusive_diarization" if exclusive else "diarization"]
    labels = rec.get("exclusive_labels", rec["labels"]) if exclusive else rec["labels"]
    return [(float(s), float(e), str(labels[int(k)])) for s, e, k in np.asarray(rows).reshape(-1, 3)]


# --------------------------------------------------------------------------------------------------
# front end: kaldi-native-fbank == torchaudio's kaldi fbank as pyannote runs it


FBANK_REFERENCE = r"""
import sys, numpy as np, torch
from pyannote.audio.models.embedding import WeSpeakerResNet34
windows = np.load(sys.argv[1])
fb = WeSpeakerResNet34().compute_fbank(torch.from_numpy(windows)[:, None])
np.save(sys.argv[2], fb.numpy())
"""


@pytest.mark.export
def test_fbank_matches_pyannote_wespeaker_fbank(tmp_path, sample):
    wave_, _ = sample
    rng = np.random.default_rng(0)
    windows = np.stack(
        [
            wave_[:WINDOW],
            wave_[16000 * 17 : 16000 * 17 + WINDOW],
            np.pad(wave_[-(WINDOW // 3) :], (0, WINDOW - WINDOW // 3)),  # padded last window
            rng.normal(0, 0.3, WINDOW).astype(np.float32),
            np.zeros(WINDOW, np.float32),
        ]
    ).astype(np.float32)
    np.save(tmp_path / "w.npy", windows)
    proc = subprocess.run(
        [str(EXPORT_PYTHON), "-c", FBANK_REFERENCE, str(tmp_path / "w.npy"), str(tmp_path / "f.npy")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = np.load(tmp_path / "f.npy")
    fbank = WeSpeakerFbank.from_json(MODEL_REPOSITORY / SpeakerEmbedding.NAME / "1" / "fbank.json")
    for w, ref in zip(windows, expected, strict=True):
        got = fbank(w)
        assert got.shape == ref.shape == (998, 80)
        err = np.abs(got - ref)
        # float32 FFT rounding in log-mel energies: typical 1e-5, worst bins < 1e-3
        assert err.max() <= 2e-3 and err.mean() <= 3e-5, (err.max(), err.mean())


# --------------------------------------------------------------------------------------------------
# the two models


def test_models_answer_with_real_tensors(triton_diarization, sample):
    wave_, _ = sample
    windows = windows_of(wave_)[:4]
    masks = np.zeros((3, FRAMES), np.float32)
    masks[0, :300] = 1
    masks[1, 250:] = 0.5

    async def go():
        async with TritonClient(triton_diarization.ports.grpc_url) as c:
            seg = await c.infer(
                Segmentation.NAME, {Segmentation.WAVEFORM: windows[:1]}, [Segmentation.SCORES]
            )
            emb = await c.infer(
                SpeakerEmbedding.NAME,
                {SpeakerEmbedding.WAVEFORM: windows[:1], SpeakerEmbedding.MASKS: masks[None]},
                [SpeakerEmbedding.EMBEDDINGS],
            )
            return seg[Segmentation.SCORES], emb[SpeakerEmbedding.EMBEDDINGS]

    scores, embeddings = run(go())
    assert scores.shape == (1, FRAMES, Segmentation.NUM_CLASSES) and scores.nbytes > 0
    assert np.isfinite(scores).all() and np.abs(scores).sum() > 0
    # log-softmax over the powerset classes
    np.testing.assert_allclose(np.exp(scores).sum(-1), 1.0, atol=1e-4)
    assert embeddings.shape[:2] == (1, 3) and embeddings.nbytes > 0
    assert np.isfinite(embeddings[0, :2]).all() and np.abs(embeddings[0, :2]).sum() > 0
    assert np.isnan(embeddings[0, 2]).all(), "a speaker with an all-zero mask must get a NaN row"


def test_model_inputs_are_validated(triton_diarization):
    good = np.zeros((1, 1, WINDOW), np.float32)
    nan = good.copy()
    nan[0, 0, 5] = np.nan
    masks = np.ones((1, 3, FRAMES), np.float32)

    async def checks():
        async with TritonClient(triton_diarization.ports.grpc_url) as client:
            cases = [
                (
                    Segmentation.NAME,
                    {Segmentation.WAVEFORM: np.zeros((1, 1, 16000), np.float32)},
                    ["WAVEFORM"],
                ),
                (Segmentation.NAME, {Segmentation.WAVEFORM: nan}, ["NaN"]),
                (
                    SpeakerEmbedding.NAME,
                    {
                        SpeakerEmbedding.WAVEFORM: good,
                        SpeakerEmbedding.MASKS: np.ones((1, 3, 100), np.float32),
                    },
                    ["MASKS"],
                ),
                (
                    SpeakerEmbedding.NAME,
                    {SpeakerEmbedding.WAVEFORM: good, SpeakerEmbedding.MASKS: -masks},
                    ["MASKS", "non-negative"],
                ),
                (
                    SpeakerEmbedding.NAME,
                    {SpeakerEmbedding.WAVEFORM: nan, SpeakerEmbedding.MASKS: masks},
                    ["NaN"],
                ),
            ]
            for model, inputs, words in cases:
                with pytest.raises(InvalidRequestError) as info:
                    await client.infer(model, inputs)
                assert all(w in str(info.value) for w in words), str(info.value)

    run(checks())


def test_a_bad_request_fails_alone_in_a_shared_batch(triton_diarization, sample):
    """A NaN window sent between two good ones: Triton runs the three requests as one execution
    (its counters: +3 inferences, +1 execution — the Python backend counts a request answered with
    an error as an inference), the bad one fails with its reason, the good ones get their outputs."""
    wave_, _ = sample
    good = windows_of(wave_)[:2]
    bad = good[0].copy()
    bad[0, 5] = np.nan
    masks = np.zeros((3, FRAMES), np.float32)
    masks[0, :300] = 1
    cases = {
        Segmentation.NAME: lambda w: {Segmentation.WAVEFORM: w[None]},
        SpeakerEmbedding.NAME: lambda w: {
            SpeakerEmbedding.WAVEFORM: w[None],
            SpeakerEmbedding.MASKS: masks[None],
        },
    }
    url = triton_diarization.ports.metrics_url

    for model, inputs in cases.items():

        async def burst(model=model, inputs=inputs):
            async with TritonClient(triton_diarization.ports.grpc_url) as client:
                base = inference_counts(scrape(url), model)
                await client.infer(model, inputs(good[0]))  # connected: the burst leaves at once
                # (counted just after its response: wait for it, or it lands in the burst's delta)
                counted = counts_after(url, model, base, 1)
                before = InferenceCounts(
                    base.inferences + counted.inferences, base.executions + counted.executions
                )
                requests = [inputs(good[0]), inputs(bad), inputs(good[1])]
                results = await asyncio.gather(
                    *(client.infer(model, r) for r in requests), return_exceptions=True
                )
                return before, results

        executions = []
        # The dynamic batcher gathers what arrives within 5 ms: a burst of three nearly always forms
        # one execution (seen: 6 in 8 bursts; two requests: 8 in 8). Up to 8 bursts until one does.
        for _ in range(8):
            before, results = run(burst())
            assert isinstance(results[1], InvalidRequestError) and "NaN" in str(results[1]), results[1]
            for r in (results[0], results[2]):
                assert isinstance(r, dict) and all(v.size and np.isfinite(v).any() for v in r.values()), r
            delta = counts_after(url, model, before, len(results))
            assert delta.inferences == len(results), (model, delta)
            executions.append(delta.executions)
            if delta.executions == 1:
                break
        assert executions[-1] == 1, f"{model}: the bad request never shared an execution: {executions}"


def test_batching_is_real(triton_diarization, sample, settings):
    """Two diarizations at once: Triton forms batches > 1 for both models (shown by both metrics)."""
    wave_, _ = sample
    url = triton_diarization.ports.metrics_url
    before = scrape(url)

    async def go():
        async with TritonClient(triton_diarization.ports.grpc_url) as client:
            d = DiarizationClient(client, settings)
            return await asyncio.gather(d.diarize(wave_), d.diarize(wave_[::-1].copy()))

    results = run(go())
    assert all(r.turns for r in results)
    # Triton updates its counters just after responding: poll until every window's request is counted
    windows = sum(r.num_windows for r in results)
    deadline = time.monotonic() + 10.0
    while True:
        after = scrape(url)
        seg = inference_counts(after, Segmentation.NAME) - inference_counts(before, Segmentation.NAME)
        if seg.inferences >= windows or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for model in DIARIZATION_MODELS:
        counts = inference_counts(after, model) - inference_counts(before, model)
        sizes = batch_sizes(after, model)
        sizes_before = batch_sizes(before, model)
        mean = (sizes.sum - sizes_before.sum) / max(1.0, sizes.count - sizes_before.count)
        assert counts.inferences > 0, model
        assert counts.mean_batch > 1.0, f"{model}: {counts} (Triton never batched)"
        assert mean > 1.0, f"{model}: network batch-size mean {mean:.2f}"


# --------------------------------------------------------------------------------------------------
# the client pipeline


def test_streamed_chunks_equal_whole_waveform_and_progress(triton_diarization, sample, settings):
    wave_, _ = sample
    reports = []
    sizes = [7919, 16000 * 3, 123, 16000 * 11 + 5]

    def pieces():
        i, k = 0, 0
        while i < len(wave_):
            n = sizes[k % len(sizes)]
            yield wave_[i : i + n]
            i, k = i + n, k + 1

    whole = run(diarize_with(triton_diarization.ports.grpc_url, settings, wave_))
    streamed = run(
        diarize_with(triton_diarization.ports.grpc_url, settings, pieces(), progress=reports.append)
    )
    assert whole.turns and as_tuples(whole.turns) == as_tuples(streamed.turns)
    assert as_tuples(whole.exclusive_turns) == as_tuples(streamed.exclusive_turns)
    assert whole.num_windows == 21  # 30 s: 20 complete windows + 1 padded
    seconds = [r.seconds_read for r in reports]
    assert seconds == sorted(seconds) and reports[-1].finished_reading
    assert abs(seconds[-1] - len(wave_) / SAMPLE_RATE) < 1e-6
    assert reports[-1].windows_done == reports[-1].windows_sent == whole.num_windows
    # exclusive turns never overlap
    ex = sorted(as_tuples(whole.exclusive_turns))
    assert all(a[1] <= b[0] + 1e-9 for a, b in zip(ex, ex[1:], strict=False))


def test_bad_audio_is_refused_with_a_clear_error(triton_diarization, settings):
    async def go(audio):
        return await diarize_with(triton_diarization.ports.grpc_url, settings, audio)

    with pytest.raises(ValueError, match="empty"):
        run(go(np.zeros(0, np.float32)))
    with pytest.raises(ValueError, match="NaN"):
        run(go(np.full(SAMPLE_RATE, np.nan, np.float32)))
    with pytest.raises(ValueError, match="channels"):
        run(go(np.zeros((SAMPLE_RATE, 2), np.float32)))
    with pytest.raises(TypeError, match="32768"):
        run(go(np.zeros(SAMPLE_RATE, np.int16)))
    with pytest.raises(ValueError, match="min_speakers"):
        run(go_kw(triton_diarization, settings, min_speakers=3, max_speakers=2))
    with pytest.raises(ValueError, match="clustering"):
        run(go_kw(triton_diarization, settings, clustering="kmeans"))
    # too short for a window: padded like pyannote pads it; turns stay inside the audio
    short = run(go(np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE // 2).astype(np.float32)))
    assert short.num_windows == 1
    assert all(0 <= t.start_s < t.end_s <= 0.5 for t in short.turns)


async def go_kw(triton_diarization, settings, **kw):
    return await diarize_with(
        triton_diarization.ports.grpc_url, settings, np.zeros(SAMPLE_RATE, np.float32), **kw
    )


# --------------------------------------------------------------------------------------------------
# parity with pyannote.audio (dev weights)


def our_stages(triton_diarization, settings, waveform, ref_binary):
    """Our segmentation scores per window, and our embeddings for pyannote's own masks."""
    windows = windows_of(waveform)

    async def go():
        async with TritonClient(triton_diarization.ports.grpc_url) as c:
            seg = await asyncio.gather(
                *(
                    c.infer(Segmentation.NAME, {Segmentation.WAVEFORM: w[None]}, [Segmentation.SCORES])
                    for w in windows
                )
            )
            min_frames = min_num_frames(FRAMES, settings.window_s, SAMPLE_RATE, settings.min_num_samples)
            masks = embedding_masks(ref_binary, settings.exclude_overlap, min_frames)
            emb = await asyncio.gather(
                *(
                    c.infer(
                        SpeakerEmbedding.NAME,
                        {SpeakerEmbedding.WAVEFORM: w[None], SpeakerEmbedding.MASKS: m[None]},
                        [SpeakerEmbedding.EMBEDDINGS],
                    )
                    for w, m in zip(windows, masks, strict=True)
                )
            )
        scores = np.concatenate([s[Segmentation.SCORES] for s in seg])
        return scores, np.concatenate([e[SpeakerEmbedding.EMBEDDINGS] for e in emb])

    return run(go())


@pytest.mark.export
def test_per_stage_parity_with_pyannote(triton_diarization, settings, reference):
    from speechlib.diarization.windows import segmentation_frames

    report = []
    for name, ref in reference.items():
        # the window and frame grids are pyannote's
        assert (
            settings.chunks.step_s == ref["window_step"]
            and settings.chunks.duration_s == ref["window_duration"]
        )
        np.testing.assert_allclose(
            ref["window_start"], settings.chunks.frame_start(np.arange(len(ref["window_start"])))
        )
        frames = segmentation_frames()
        got = (frames.start_s, frames.step_s, frames.duration_s)
        np.testing.assert_allclose(
            got, (ref["frames_start"], ref["frames_step"], ref["frames_duration"]), atol=1e-9
        )
        waveform = decode_audio(ref["wav"])
        ref_scores = ref["scores"]
        scores, embeddings = our_stages(triton_diarization, settings, waveform, ref["segmentations"])
        assert scores.shape == ref_scores.shape, name
        seg_err = float(np.abs(scores - ref_scores).max())
        assert seg_err <= 1e-4, f"{name}: segmentation max |Δ| {seg_err}"
        assert (powerset_to_multilabel(scores) == ref["segmentations"]).mean() > 0.999, name
        # pyannote embeds every (window, speaker) and later ignores the inactive ones; we skip them (NaN)
        ref_emb = ref["embeddings"]
        skipped = inactive_speakers(ref["segmentations"]) | np.isnan(ref_emb).any(axis=2)
        ours_nan = np.isnan(embeddings).any(axis=2)
        assert (ours_nan == skipped).all(), (
            f"{name}: skipped embeddings differ from the speakers pyannote ignores"
        )
        cos = [cosine(a, b) for a, b in zip(embeddings[~skipped], ref_emb[~skipped], strict=True)]
        assert cos and min(cos) >= 0.9999, f"{name}: min embedding cosine {min(cos, default=None)}"
        report.append(f"{name}: seg max|Δ| {seg_err:.1e}; {len(cos)} embeddings, min cosine {min(cos):.7f}")
    print("\n".join(report))


@pytest.mark.export
def test_end_to_end_der_against_pyannote(triton_diarization, settings, reference):
    """DER between our output and pyannote's <= 1 %, on every frame where pyannote's choice was not
    arbitrary: its own run records where the speakers it selects were tied (tests/diarization_ties.py;
    it breaks those ties with numpy's unstable argsort, so its choice there depends on the machine)."""
    from tests.diarization_ties import der_with_and_without_ties, untied_frames_differing

    ders, report = {}, {}
    for name, ref in reference.items():
        ours = run(
            diarize_with(
                triton_diarization.ports.grpc_url, settings, decode_audio(ref["wav"]), clip_to_audio=False
            )
        )
        grid = (ref["tied_start"], ref["tied_step"], ref["tied_duration"])
        for kind, mine in (("regular", ours.turns), ("exclusive", ours.exclusive_turns)):
            theirs = reference_turns(ref, exclusive=kind == "exclusive")
            tied = ref["tied" if kind == "regular" else "exclusive_tied"]
            every, untied, fraction = der_with_and_without_ties(theirs, as_tuples(mine), tied, grid)
            differing = untied_frames_differing(theirs, as_tuples(mine), tied, grid)
            ders[f"{name}/{kind}"] = untied
            report[f"{name}/{kind}"] = (
                f"DER {every:.4f} all frames, {untied:.4f} without pyannote's {fraction:.1%} tied frames "
                f"({differing} untied frames differ)"
            )
    print("\n".join(f"{k}: {v}" for k, v in report.items()))
    assert max(ders.values()) <= 0.01, report


# --------------------------------------------------------------------------------------------------
# the trained tiny fixture: real speaker turns through our pipeline


@pytest.fixture(scope="module")
def fixture_server(tmp_path_factory):
    from serving.launcher import TritonServer

    artifacts = trained_fixture_artifacts()
    repo = diarization_repository(tmp_path_factory.mktemp("fixture_repo"), artifacts)
    with TritonServer(repo) as server:
        yield server, PipelineSettings.from_dir(artifacts)


def test_trained_fixture_recovers_a_held_out_meeting(fixture_server):
    from tests.meetings import synthetic_meeting

    server, settings = fixture_server
    path, truth = synthetic_meeting(2, seconds=60.0, seed=101)
    result = run(diarize_with(server.ports.grpc_url, settings, decode_audio(path)))
    der = frame_der([(s, e, k) for s, e, k in truth], as_tuples(result.turns))
    print(f"2-speaker held-out meeting: DER {der:.3f}, speakers {result.speakers}")
    assert len(result.speakers) == 2
    assert der <= 0.05


def test_speaker_count_constraints_are_honoured(fixture_server):
    from tests.meetings import synthetic_meeting

    server, settings = fixture_server
    path, truth = synthetic_meeting(3, seconds=45.0, seed=103)
    audio = decode_audio(path)
    one = run(diarize_with(server.ports.grpc_url, settings, audio, max_speakers=1))
    assert len(one.speakers) == 1
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in zip(one.turns, one.turns[1:], strict=False))
    two = run(diarize_with(server.ports.grpc_url, settings, audio, num_speakers=2))
    assert len(two.speakers) == 2
    more = run(diarize_with(server.ports.grpc_url, settings, audio, min_speakers=3, max_speakers=4))
    assert 3 <= len(more.speakers) <= 4


def test_silence_gives_an_empty_diarization(fixture_server):
    # Digital silence. (With -80 dBFS white noise the tiny fixture hallucinates speakers; our pipeline
    # matches pyannote stage by stage, so this is the fixture model's limit, noted on issue 5.)
    server, settings = fixture_server
    quiet = np.zeros(SAMPLE_RATE * 15, np.float32)
    result = run(diarize_with(server.ports.grpc_url, settings, quiet))
    assert result.turns == [] and result.exclusive_turns == [] and result.speakers == []
    assert result.num_windows == 6


# --------------------------------------------------------------------------------------------------
# long audio: memory stays bounded; subsampled clustering agrees with exact clustering


MEMORY_IN_FLIGHT = 8  # RPCs on the wire at once: fixes the high-water mark of audio held in transit
MEMORY_MINUTES = (4, 8, 16)  # after a 2-minute warm-up, on one server
MEMORY_GROWTH_PER_MINUTE = 0.01  # of the first file's value: the former bound (15 % from 5 to 20 minutes)
# tritonserver's peak is the requests it holds in transit at the busiest moment: up to MEMORY_IN_FLIGHT
# 10 s windows (float32), each received and copied into its tensor. How close a file comes to that
# high-water mark is chance, not length (a fresh-clone CI run saw 71 / 78 / 81 MiB, 0.76 MiB per added
# minute against 0.71), so its peaks may also differ by that much over the span; what it keeps after
# each file (anon + shmem) is held to the plain bound.
TRANSIT_BYTES = 2 * MEMORY_IN_FLIGHT * 160_000 * 4


def growth_per_minute(minutes, values) -> float:
    """Least-squares slope of ``values`` (bytes) against ``minutes``: bytes per added minute."""
    return float(np.polyfit(np.asarray(minutes, float), np.asarray(values, float), 1)[0])


@pytest.mark.slow
def test_memory_does_not_grow_with_audio_length(tmp_path, settings):
    """On one server, with the client's requests in flight bounded (so what Triton holds in transit
    has a fixed high-water mark), for files of 4, 8 and 16 minutes after a warm-up:

    * peak RSS during each file's analysis (the Triton part) of tritonserver, each stub and the client
      (this process) — the kernel's exact high-water mark, reset before each file (tests/memory.py) —
      grows by at most 1 % of the first file's peak per added minute of audio (least-squares slope
      over the three files);
    * resident anonymous + shared memory of tritonserver and the stubs *after* each file, against
      the minutes processed so far, grows by no more than that either: nothing accumulates per request.

    Measured (2026-12-06, dev models, 4 RPCs in flight, 5/10/20 min on one server): tritonserver peak
    69 / 75 / 75 MiB, anonymous after each 19 / 26 / 22 MiB; stubs flat to 1 MiB. The client's
    clustering (quadratic in the embeddings below the cap, docs/diarization.md) runs after the
    sampled analysis and is bounded by ``max_embeddings``, not by this test.
    """
    from serving.launcher import TritonServer
    from tests.audio import shuffled_tiling, wav_chunks
    from tests.memory import MiB, PeakRSS, tree_memory

    sources = meeting_sources()
    warm = shuffled_tiling(tmp_path / "warm.wav", sources, 2 * 60, seed=0)
    files = [shuffled_tiling(tmp_path / f"{m}min.wav", sources, m * 60, seed=m) for m in MEMORY_MINUTES]
    repo = diarization_repository(tmp_path / "repo")
    processes = ("client", "tritonserver", f"stub:{Segmentation.NAME}", f"stub:{SpeakerEmbedding.NAME}")

    async def analyze(url, path):
        async with TritonClient(url, max_in_flight=MEMORY_IN_FLIGHT) as client:
            return await DiarizationClient(client, settings).analyze(wav_chunks(path))

    peaks: list[dict[str, int]] = []
    after: list[dict[str, int]] = []
    with TritonServer(repo) as server:
        run(analyze(server.ports.grpc_url, warm))  # every code path once, allocators at their high-water mark
        for path in files:
            with PeakRSS(server.process.pid) as rss:
                analysis = run(analyze(server.ports.grpc_url, path))
            assert analysis.assemble().turns
            peaks.append(dict(rss.peaks))
            mem = tree_memory(server.process.pid)
            after.append({k: mem[k]["anon"] + mem[k]["shmem"] for k in processes[1:] if k in mem})
    processed = np.cumsum(MEMORY_MINUTES)
    table = {
        k: "peak "
        + " / ".join(f"{p.get(k, 0) / MiB:.0f}" for p in peaks)
        + (
            " MiB; anon+shmem after " + " / ".join(f"{a.get(k, 0) / MiB:.0f}" for a in after)
            if k in after[0]
            else " MiB"
        )
        for k in processes
    }
    print(f"memory, {MEMORY_MINUTES} min on one server:", table)
    for name in processes:
        assert all(name in p for p in peaks), (name, sorted(peaks[0]))
        bound = MEMORY_GROWTH_PER_MINUTE * peaks[0][name]
        transit = TRANSIT_BYTES / (MEMORY_MINUTES[-1] - MEMORY_MINUTES[0]) if name == "tritonserver" else 0
        slope = growth_per_minute(MEMORY_MINUTES, [p[name] for p in peaks])
        assert slope <= bound + transit, (
            f"{name}: peak grows {slope / MiB:.2f} MiB per added minute "
            f"(bound {(bound + transit) / MiB:.2f}): {table}"
        )
        if name != "client":
            slope = growth_per_minute(processed, [a[name] for a in after])
            assert slope <= bound, (
                f"{name}: memory left after each file grows {slope / MiB:.2f} MiB per minute processed "
                f"(bound {bound / MiB:.2f}): {table}"
            )


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_subsampled_clustering_agrees_with_exact_on_two_hours(fixture_server, tmp_path):
    """A 2-hour file tiled from the synthetic 2/3/4-speaker meetings through the whole pipeline
    (trained fixture): clustering exactly (no cap: ~15 600 embeddings) and with the cap lowered to
    2 000 and 4 000 differ by DER <= 2 % (regular and exclusive). The analysis alone takes ~5 min here."""
    from tests.audio import shuffled_tiling, wav_chunks

    server, settings = fixture_server
    path = shuffled_tiling(tmp_path / "2h.wav", meeting_sources()[1:], 2 * 3600, seed=7)

    async def analyze():
        async with TritonClient(server.ports.grpc_url) as client:
            return await DiarizationClient(client, settings).analyze(wav_chunks(path))

    analysis = run(analyze())
    exact = analysis.assemble(max_embeddings=None)
    assert not exact.subsampled and exact.num_embeddings > 4 * 2000 and len(exact.speakers) >= 4
    for cap in (2000, 4000):
        sub = analysis.assemble(max_embeddings=cap)
        assert sub.subsampled
        der = frame_der(as_tuples(exact.turns), as_tuples(sub.turns))
        der_x = frame_der(as_tuples(exact.exclusive_turns), as_tuples(sub.exclusive_turns))
        print(
            f"2 h: {exact.num_embeddings} embeddings; exact {len(exact.speakers)} speakers, cap {cap}: "
            f"{len(sub.speakers)}; DER between them {der:.4f} (exclusive {der_x:.4f}); "
            f"analysis {analysis.seconds:.0f} s"
        )
        assert der <= 0.02 and der_x <= 0.02, cap
