"""Triton model ``transcribe`` (BLS): at most 60 s of audio -> VAD segments, each transcribed by ``asr``.

For clients that do not orchestrate. It does what the client library's VAD -> ASR path does
(``inference_client.asr.ASRClient.transcribe_segments``): one ``vad`` request on the whole waveform
(the model's default end silence), then one ``asr`` request per segment, all in flight at once
(``async_exec``) so that ``asr`` batches them. Long audio belongs to the client library, not here.
"""

import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils

from serving.triton_io import (
    ModelContext,
    RequestError,
    error_response,
    int_output,
    itn_input,
    language_input,
    text_output,
    waveform_input,
)
from speechlib.interfaces import ASR, SAMPLE_RATE, VAD, Transcribe


class ModelCallError(RuntimeError):
    """A call to ``vad`` or ``asr`` failed; its message goes back to the client."""


async def _call(model: str, inputs, outputs):
    request = pb_utils.InferenceRequest(model_name=model, requested_output_names=outputs, inputs=inputs)
    response = await request.async_exec()
    if response.has_error():
        raise ModelCallError(f"{model} failed: {response.error().message()}")
    return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs}


def _text(array) -> str:
    value = array.reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


async def _transcribe(wave: np.ndarray, language: str, use_itn: bool):
    vad = await _call(VAD.NAME, [pb_utils.Tensor(VAD.WAVEFORM, wave[None, :])], [VAD.SEGMENTS])
    segments = vad[VAD.SEGMENTS].reshape(-1, 2)
    outputs = [ASR.TEXT, ASR.DETECTED_LANGUAGE, ASR.EMOTION, ASR.EVENT]
    lang = np.array([[language.encode("utf-8")]], dtype=np.object_)
    itn = np.array([[use_itn]], dtype=bool)
    calls = []
    for start_ms, end_ms in segments.tolist():
        piece = np.ascontiguousarray(wave[start_ms * SAMPLE_RATE // 1000 : end_ms * SAMPLE_RATE // 1000])
        inputs = [
            pb_utils.Tensor(ASR.WAVEFORM, piece[None, :]),
            pb_utils.Tensor(ASR.LANGUAGE, lang),
            pb_utils.Tensor(ASR.USE_ITN, itn),
        ]
        calls.append(_call(ASR.NAME, inputs, outputs))
    results = await asyncio.gather(*calls)
    texts = [[_text(r[name]) for r in results] for name in outputs]

    return pb_utils.InferenceResponse(
        output_tensors=[
            int_output(Transcribe.SEGMENTS, segments),
            text_output(Transcribe.TEXTS, texts[0]),
            text_output(Transcribe.LANGUAGES, texts[1]),
            text_output(Transcribe.EMOTIONS, texts[2]),
            text_output(Transcribe.EVENTS, texts[3]),
        ]
    )


class TritonPythonModel:
    def initialize(self, args):
        self.ctx = ModelContext(args)

    async def execute(self, requests):
        jobs = []
        for request in requests:
            try:
                wave = waveform_input(request, Transcribe.WAVEFORM, Transcribe.MAX_SECONDS, SAMPLE_RATE)
                language = language_input(request, Transcribe.LANGUAGE)
                use_itn = itn_input(request, Transcribe.USE_ITN)
                jobs.append(_transcribe(wave, language, use_itn))
            except RequestError as exc:
                jobs.append(_failed(str(exc)))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        responses = []
        for result in results:
            if isinstance(result, ModelCallError):
                responses.append(error_response(str(result)))
            elif isinstance(result, Exception):
                responses.append(error_response(f"transcribe failed: {result}"))
            else:
                responses.append(result)
        return responses


async def _failed(message: str):
    return error_response(message)
