"""The only reasons a test may skip, and the check that holds the suite to them.

Under `make test` every dependency a test needs is installed by the Makefile, so a missing module,
file or environment is a failure, not a skip. What remains are things no development or CI machine
of this project can have. A test skips only through :func:`skip_unavailable`, whose reason starts
with one of these keys in brackets; ``tests/conftest.py`` turns any other skip into a failed run.

    pytest.skip(skip_unavailable("gpu", "needs CUDA for the torchscript runtime"))
"""

from __future__ import annotations

ALLOWED_SKIPS: dict[str, str] = {
    "gpu": "needs an NVIDIA GPU (none on the development and CI machines; bench/gpu/ runs on a lent one)",
    "real-models": "needs real model weights in models/ (`make download-models`; the hubs are unreachable here)",
    "livekit-server": "needs a real LiveKit server (set LIVEKIT_URL; none is installable here)",
}


def skip_unavailable(key: str, detail: str = "") -> str:
    """The skip reason for something this machine cannot have (``key`` from :data:`ALLOWED_SKIPS`)."""
    if key not in ALLOWED_SKIPS:
        raise KeyError(f"{key!r} is not an allowed skip reason: {sorted(ALLOWED_SKIPS)}")
    return f"[{key}] {ALLOWED_SKIPS[key]}" + (f": {detail}" if detail else "")


def is_allowed(reason: str) -> bool:
    """Whether a skip ``reason`` (as pytest reports it, possibly prefixed "Skipped: ") is on the list."""
    reason = reason.removeprefix("Skipped: ")
    return any(reason.startswith(f"[{key}] ") for key in ALLOWED_SKIPS)
