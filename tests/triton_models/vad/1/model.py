"""Test-only fake ``vad``: 10 ms frames with RMS > 0.01 are speech; gaps < MAX_END_SILENCE_MS merge."""

import numpy as np
import triton_python_backend_utils as pb_utils

from speechlib.interfaces import VAD

FRAME = 160  # samples per 10 ms at 16 kHz
DEFAULT_MAX_END_SILENCE_MS = 500


def segments(x, max_end_silence_ms):
    n = x.size // FRAME
    speech = np.sqrt((x[: n * FRAME].reshape(n, FRAME).astype(np.float64) ** 2).mean(axis=1)) > 0.01
    rows = []
    for t in np.flatnonzero(speech):
        if rows and (t * 10 - rows[-1][1]) < max_end_silence_ms:
            rows[-1][1] = (t + 1) * 10
        else:
            rows.append([t * 10, (t + 1) * 10])
    return np.array(rows, np.int32).reshape(-1, 2)


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, VAD.WAVEFORM).as_numpy().reshape(-1)
            mes = pb_utils.get_input_tensor_by_name(request, VAD.MAX_END_SILENCE_MS)
            mes = DEFAULT_MAX_END_SILENCE_MS if mes is None else int(mes.as_numpy().reshape(-1)[0])
            if mes < 0:
                err = pb_utils.TritonError(
                    f"{VAD.MAX_END_SILENCE_MS} must be >= 0, got {mes}", pb_utils.TritonError.INVALID_ARG
                )
                responses.append(pb_utils.InferenceResponse(error=err))
                continue
            seg = segments(x, mes)[None]
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(VAD.SEGMENTS, seg)]))
        return responses
