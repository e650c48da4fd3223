"""Triton model ``asr``: SenseVoiceSmall on utterances of at most 30 s -> text, tags, token times.

Thin: validation and plumbing here; features, network and decoding in ``serving.sensevoice``,
the pure parts (CTC, vocabulary, language codes) in ``speechlib``. Requests arrive as a ragged
dynamic batch and run through the network as one padded batch; a bad request fails alone.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from serving.sensevoice import MIN_SAMPLES, SenseVoice
from serving.triton_io import (
    BatchSizeMetric,
    ModelContext,
    RequestError,
    error_response,
    waveform_input,
)
from speechlib.interfaces import ASR, SAMPLE_RATE
from speechlib.languages import normalize_language


def language_input(request) -> str:
    tensor = pb_utils.get_input_tensor_by_name(request, ASR.LANGUAGE)
    if tensor is None:
        return "auto"
    data = tensor.as_numpy().reshape(-1)
    if data.size != 1:
        raise RequestError(f"{ASR.LANGUAGE} must hold exactly one code, got {data.size}")
    value = data[0]
    code = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    try:
        return normalize_language(code)
    except ValueError as exc:
        raise RequestError(f"{ASR.LANGUAGE}: {exc}") from None


def itn_input(request) -> bool:
    tensor = pb_utils.get_input_tensor_by_name(request, ASR.USE_ITN)
    if tensor is None:
        return True
    data = tensor.as_numpy().reshape(-1)
    if data.size != 1:
        raise RequestError(f"{ASR.USE_ITN} must hold exactly one value, got {data.size}")
    return bool(data[0])


def text_tensor(name: str, values):
    """BYTES output with the batch dim of 1: ``[1, len(values)]``."""
    array = np.array([v.encode("utf-8") for v in values], dtype=np.object_).reshape(1, -1)
    return pb_utils.Tensor(name, array)


def response_for(result):
    return pb_utils.InferenceResponse(
        output_tensors=[
            text_tensor(ASR.TEXT, [result.text]),
            text_tensor(ASR.DETECTED_LANGUAGE, [result.language]),
            text_tensor(ASR.EMOTION, [result.emotion]),
            text_tensor(ASR.EVENT, [result.event]),
            text_tensor(ASR.TOKENS, result.tokens),
            pb_utils.Tensor(ASR.TOKEN_IDS, np.ascontiguousarray(result.token_ids, np.int32).reshape(1, -1)),
            pb_utils.Tensor(
                ASR.TOKEN_TIMES_MS, np.ascontiguousarray(result.token_times_ms, np.int32).reshape(1, -1, 2)
            ),
        ]
    )


class TritonPythonModel:
    def initialize(self, args):
        ctx = ModelContext(args)
        self.metric = BatchSizeMetric(ctx.name)
        self.model = SenseVoice(
            ctx.version_dir,
            runtime=ctx.parameter("runtime", "onnxruntime"),
            intra_op_threads=int(ctx.parameter("intra_op_threads", "1")),
            device=ctx.device,
            device_id=ctx.device_id,
            max_padding=float(ctx.parameter("max_padding", "0.25")),
        )
        # Warm-up (not counted in the metric): the first runs are slow; pay for them here, not on a request.
        rng = np.random.default_rng(0)
        warm = [rng.normal(0, 0.1, n).astype(np.float32) for n in (SAMPLE_RATE, SAMPLE_RATE * 2)]
        self.model.recognize(warm)
        self.model.on_batch = self.metric.observe

    def execute(self, requests):
        responses = [None] * len(requests)
        waves, langs, itns, index = [], [], [], []
        for i, request in enumerate(requests):
            try:
                wave = waveform_input(request, ASR.WAVEFORM, float("inf"), SAMPLE_RATE)
                if wave.size > ASR.MAX_SECONDS * SAMPLE_RATE:
                    raise RequestError(
                        f"{ASR.WAVEFORM} holds {wave.size / SAMPLE_RATE:.1f} s of audio; asr takes one utterance of "
                        f"at most {ASR.MAX_SECONDS:.0f} s per request (cut longer audio with vad first, "
                        "or send up to 60 s to transcribe)"
                    )
                if wave.size < MIN_SAMPLES:
                    raise RequestError(
                        f"{ASR.WAVEFORM} holds {wave.size} samples; send at least {MIN_SAMPLES} (25 ms at 16 kHz)"
                    )
                langs.append(language_input(request))
                itns.append(itn_input(request))
                waves.append(wave)
                index.append(i)
            except RequestError as exc:
                responses[i] = error_response(str(exc))
        if waves:
            try:
                results = self.model.recognize(waves, langs, itns)
            except Exception as exc:  # never crash the stub: fail these requests instead
                results = [exc] * len(waves)
            for i, result in zip(index, results, strict=False):
                if isinstance(result, Exception):
                    responses[i] = error_response(f"asr failed: {result}")
                else:
                    responses[i] = response_for(result)
        return responses
