"""Plumbing shared by our Python-backend models: parameters, input validation, errors, metrics.

Only importable inside Triton's Python-backend stub (it imports ``triton_python_backend_utils``).
A request that fails validation gets a ``TritonError`` on its own response; the rest of the batch
goes on (``RequestError`` is raised by validation and turned into that response).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from speechlib.interfaces import BATCH_SIZE_BUCKETS, BATCH_SIZE_METRIC
from speechlib.languages import normalize_language


class RequestError(ValueError):
    """A problem with one request's inputs; its message goes back to that client."""


class ModelContext:
    """What every model reads from Triton's ``initialize(args)``."""

    def __init__(self, args: dict[str, Any]):
        self.config = json.loads(args["model_config"])
        self.name = self.config["name"]
        self.version_dir = f"{args['model_repository']}/{args['model_version']}"
        self.device = "cuda" if args.get("model_instance_kind") == "GPU" else "cpu"
        self.device_id = int(args.get("model_instance_device_id") or 0)

    def parameter(self, key: str, default: str) -> str:
        value = self.config.get("parameters", {}).get(key, {}).get("string_value")
        return default if value in (None, "") else value


def network_batch(ctx: ModelContext) -> int:
    """Windows per network call: the ``network_batch`` parameter, at most (and by default) the
    config's ``max_batch_size``. A dynamic batch larger than this runs in several calls."""
    limit = int(ctx.config.get("max_batch_size", 0)) or 1
    value = int(ctx.parameter("network_batch", str(limit)))
    if value < 1:
        raise ValueError(f"{ctx.name}: parameter network_batch must be >= 1, got {value}")
    return min(value, limit)


def network_from_context(cls, ctx: ModelContext, **kwargs):
    """``cls(version_dir, intra_op_threads=, device=, device_id=, max_batch=, **kwargs)`` from a model's
    config: the constructor shape of ``serving.diarization``'s networks."""
    return cls(
        ctx.version_dir,
        intra_op_threads=int(ctx.parameter("intra_op_threads", "1")),
        device=ctx.device,
        device_id=ctx.device_id,
        max_batch=network_batch(ctx),
        **kwargs,
    )


class BatchSizeMetric:
    """Histogram of the batch sizes a model actually passes to its network runtime."""

    def __init__(self, model_name: str):
        # Keep the family alive as long as the metric: Triton drops the metric with its family.
        self.family = pb_utils.MetricFamily(
            name=BATCH_SIZE_METRIC,
            description="Batch size passed to the network runtime (onnxruntime/torch) per call",
            kind=pb_utils.MetricFamily.HISTOGRAM,
        )
        self.metric = self.family.Metric(
            labels={"model": model_name}, buckets=[float(b) for b in BATCH_SIZE_BUCKETS]
        )

    def observe(self, batch_size: int) -> None:
        self.metric.observe(float(batch_size))


def error_response(message: str, invalid_argument: bool = True) -> pb_utils.InferenceResponse:
    """A failed response for one request: INVALID_ARG for bad input (the client must not retry it),
    INTERNAL for a failure of ours."""
    code = pb_utils.TritonError.INVALID_ARG if invalid_argument else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))


def _samples(request, name: str) -> np.ndarray:
    """A request's FP32 sample tensor ``name`` as numpy (missing or other dtypes refused)."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise RequestError(f"input {name} is missing")
    data = tensor.as_numpy()
    if data.dtype != np.float32:
        raise RequestError(f"{name} must be FP32 samples in [-1, 1], got {data.dtype}")
    return data


def waveform_input(
    request, name: str, max_seconds: float, sample_rate: int, allow_empty: bool = False
) -> np.ndarray:
    """One request's 1-D float32 waveform (the batch dim of 1 removed), validated."""
    data = _samples(request, name)
    if data.ndim == 2 and data.shape[0] == 1:
        data = data[0]
    elif data.ndim != 1:
        raise RequestError(
            f"{name} must hold one waveform per request (shape [1, samples]); got shape {list(data.shape)}"
        )
    if data.size == 0 and not allow_empty:
        raise RequestError(f"{name} is empty: send at least one 16 kHz sample")
    if data.size > max_seconds * sample_rate:
        raise RequestError(
            f"{name} holds {data.size / sample_rate:.1f} s of audio; this model takes at most {max_seconds:.0f} s "
            "per request (split longer audio, or use the streaming model)"
        )
    if not np.isfinite(data).all():
        raise RequestError(f"{name} contains NaN or infinite samples")
    return data


def window_input(request, name: str, samples: int) -> np.ndarray:
    """One request's fixed-length window as ``[1, samples]`` float32, validated."""
    data = _samples(request, name)
    if data.size != samples:
        raise RequestError(
            f"{name} must be one 10 s window of 16 kHz audio, [1, {samples}] "
            f"(pad the last window with zeros); got shape {list(data.shape)}"
        )
    if not np.isfinite(data).all():
        raise RequestError(f"{name} contains NaN or infinite samples")
    return data.reshape(1, samples)


def optional_int(request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = _one_value(request, name, "value")
    if raw is None:
        return default
    value = int(raw)
    if not low <= value <= high:
        raise RequestError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _one_value(request, name: str, what: str):
    """The single element of optional input ``name`` (None when absent)."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    data = tensor.as_numpy().reshape(-1)
    if data.size != 1:
        raise RequestError(f"{name} must hold exactly one {what}, got {data.size}")
    return data[0]


def language_input(request, name: str) -> str:
    """The language option (BYTES, one code; default ``auto``) normalised by the one language
    mapping (:func:`speechlib.languages.normalize_language`); unknown codes are a RequestError."""
    value = _one_value(request, name, "code")
    if value is None:
        return "auto"
    code = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    try:
        return normalize_language(code)
    except ValueError as exc:
        raise RequestError(f"{name}: {exc}") from None


def itn_input(request, name: str) -> bool:
    """The inverse-text-normalisation flag (BOOL, one value; default True)."""
    value = _one_value(request, name, "value")
    return True if value is None else bool(value)


def text_output(name: str, values) -> pb_utils.Tensor:
    """A BYTES output of UTF-8 strings with the batch dim of 1: ``[1, len(values)]``."""
    return pb_utils.Tensor(
        name, np.array([v.encode("utf-8") for v in values], dtype=np.object_).reshape(1, -1)
    )


def control_value(request, name: str) -> int:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return 0 if tensor is None else int(tensor.as_numpy().reshape(-1)[0])


def int_output(name: str, rows: np.ndarray) -> pb_utils.Tensor:
    """A [1, K, 2]-shaped INT32 output (batch dim of 1 restored)."""
    return pb_utils.Tensor(name, np.ascontiguousarray(rows, dtype=np.int32)[None, ...])
