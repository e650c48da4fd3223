"""onnxruntime sessions for the Triton Python-backend models (CPU here, CUDA in the GPU image)."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def create_session(
    path: str | Path, intra_op_threads: int = 1, device: str = "cpu", device_id: int = 0
) -> ort.InferenceSession:
    """Open an ONNX model. ``device`` is ``cpu`` or ``cuda`` (the GPU config's instances).

    On CUDA, cuDNN's convolution algorithm search is set to DEFAULT: EXHAUSTIVE (the default) re-runs
    its search for every new input shape, which ragged batches produce all the time.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(intra_op_threads))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if device == "cuda":
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                f"this model instance is configured for the GPU but onnxruntime offers only {available}; "
                "install onnxruntime-gpu in the serving image or use the CPU config"
            )
        providers = [
            ("CUDAExecutionProvider", {"device_id": int(device_id), "cudnn_conv_algo_search": "DEFAULT"}),
            "CPUExecutionProvider",
        ]
    else:
        providers = ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
