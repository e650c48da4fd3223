"""Triton model ``asr``: SenseVoiceSmall on utterances of at most 30 s -> text, tags, token times and posteriors.

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
    itn_input,
    language_input,
    text_output,
    waveform_input,
)
from speechlib.interfaces import ASR, SAMPLE_RATE


def response_for(result):
    return pb_utils.InferenceResponse(
        output_tensors=[
            text_output(ASR.TEXT, [result.text]),
            text_output(ASR.DETECTED_LANGUAGE, [result.language]),
            text_output(ASR.EMOTION, [result.emotion]),
            text_output(ASR.EVENT, [result.event]),
            text_output(ASR.TOKENS, result.tokens),
            pb_utils.Tensor(ASR.TOKEN_IDS, np.ascontiguousarray(result.token_ids, np.int32).reshape(1, -1)),
            pb_utils.Tensor(
                ASR.TOKEN_TIMES_MS, np.ascontiguousarray(result.token_times_ms, np.int32).reshape(1, -1, 2)
            ),
            pb_utils.Tensor(
                ASR.TOKEN_PROBS, np.ascontiguousarray(result.token_probs, np.float32).reshape(1, -1)
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
                langs.append(language_input(request, ASR.LANGUAGE))
                itns.append(itn_input(request, ASR.USE_ITN))
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
