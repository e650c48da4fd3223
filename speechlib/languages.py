"""Language codes: the one mapping from what users send to what SenseVoice understands.

Users send BCP-47-ish codes (``zh-CN``, ``en-US``, ``cmn``, ``zh-HK``); SenseVoice knows five
languages plus ``auto`` (detect). :func:`normalize_language` maps one to the other or raises a
``ValueError`` that lists what is supported. The network's ``language`` / ``textnorm`` inputs are
prompt-embedding indices (not token ids): :data:`LANGUAGE_PROMPT` and :data:`TEXTNORM_PROMPT`.
"""

from __future__ import annotations

AUTO = "auto"

SUPPORTED = ("auto", "zh", "en", "yue", "ja", "ko")
"""Canonical codes a caller may ask for (``nospeech`` is a detection result, not a request)."""

# Exact aliases (lower-case) -> canonical code. ``en-*`` is handled by prefix below.
_ALIASES = {
    "auto": "auto",
    "": "auto",
    "zh": "zh",
    "zh-cn": "zh",
    "cmn": "zh",
    "yue": "yue",
    "zh-hk": "yue",
    "en": "en",
    "ja": "ja",
    "ko": "ko",
}

LANGUAGE_PROMPT = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}
"""Canonical code -> index of SenseVoice's language prompt embedding (the ONNX ``language`` input)."""

TEXTNORM_PROMPT = {True: 14, False: 15}
"""use_itn -> index of SenseVoice's ``withitn`` / ``woitn`` prompt embedding (the ONNX ``textnorm`` input)."""


def supported_codes_text() -> str:
    return "auto, zh (also zh-CN, cmn), en (also en-*), yue (also zh-HK), ja, ko"


def normalize_language(code: str | None) -> str:
    """Map a user's language code to one of :data:`SUPPORTED` (``None`` and ``""`` mean ``auto``).

    Case-insensitive; ``_`` is accepted for ``-``. Raises ``ValueError`` naming the supported codes.
    """
    if code is None:
        return AUTO
    if not isinstance(code, str):
        raise ValueError(f"language must be a string code, got {type(code).__name__}")
    key = code.strip().lower().replace("_", "-")
    if key in _ALIASES:
        return _ALIASES[key]
    if key.startswith("en-") and len(key) > 3:
        return "en"
    raise ValueError(f"unsupported language code {code!r}; supported: {supported_codes_text()}")


def language_prompt(code: str | None) -> int:
    """The network's ``language`` input for a user's code (see :func:`normalize_language`)."""
    return LANGUAGE_PROMPT[normalize_language(code)]
