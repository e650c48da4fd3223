"""SenseVoice's vocabulary: token ids -> text pieces, transcript text and the ``<|...|>`` tags.

The vocabulary is ``tokens.json`` (the piece string of each id, written by the export from the model's
own sentencepiece BPE file), so no sentencepiece is needed at run time. SenseVoice emits four tags
before the text: language (``<|en|>``), emotion (``<|NEUTRAL|>``), audio event (``<|Speech|>``) and
text normalisation (``<|withitn|>``/``<|woitn|>``). Every tag is recognised by its piece string,
never by a hard-coded id (event tags have no fixed ids).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPACE = "\u2581"  # sentencepiece's word-boundary symbol
_TAG = re.compile(r"^<\|(.+)\|>$")
_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")

EMOTIONS = frozenset({"HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL", "DISGUSTED", "SURPRISED", "EMO_UNKNOWN"})
TEXTNORM = {"withitn": True, "woitn": False}

_LANGUAGE_NAME = re.compile(r"^(?:[a-z]{2,3}|nospeech)$")

# Tag kinds.
LANGUAGE, EMOTION, EVENT, ITN, OTHER = "language", "emotion", "event", "itn", "other"


def tag_kind(piece: str) -> str | None:
    """Which kind of tag ``piece`` is (``language``/``emotion``/``event``/``itn``/``other``), or None
    for a text piece.

    Language tags are 2-3 letter lower-case codes or ``nospeech``; emotions are SenseVoice's
    upper-case emotion names (``EMO_*`` too); ITN tags are ``withitn``/``woitn``; a tag whose name
    starts with a capital is an audio event (``Speech``, ``BGM``, ``Laughter``, ``Event_UNK``, ...).
    Anything else (e.g. a dev vocabulary's ``<|dev_24886|>`` placeholders) is ``other``: a tag, so not
    text, but reported nowhere.
    """
    m = _TAG.match(piece)
    if m is None:
        return None
    name = m.group(1)
    if name in TEXTNORM:
        return ITN
    if name in EMOTIONS or name.startswith("EMO_"):
        return EMOTION
    if _LANGUAGE_NAME.match(name):
        return LANGUAGE
    if name[:1].isupper():
        return EVENT
    return OTHER


def _decode_bytes(data: bytes) -> str:
    """UTF-8 with one U+FFFD per invalid byte (as sentencepiece decodes byte pieces)."""
    out = []
    while data:
        try:
            out.append(data.decode("utf-8"))
            break
        except UnicodeDecodeError as exc:
            out.append(data[: exc.start].decode("utf-8"))
            out.append("\ufffd" * (exc.end - exc.start))
            data = data[exc.end :]
    return "".join(out)


def detokenize(pieces: Sequence[str]) -> str:
    """Join sentencepiece pieces as sentencepiece's ``DecodePieces`` does: ``▁`` becomes a space, the
    leading space of the first piece is dropped, byte pieces (``<0xE4>``) are joined as UTF-8."""
    out: list[str] = []
    pending = bytearray()
    for piece in pieces:
        m = _BYTE.match(piece)
        if m is not None:
            pending.append(int(m.group(1), 16))
            continue
        if pending:
            out.append(_decode_bytes(bytes(pending)))
            pending = bytearray()
        out.append(piece)
    if pending:
        out.append(_decode_bytes(bytes(pending)))
    text = "".join(out).replace(SPACE, " ")
    return text[1:] if text.startswith(" ") else text


@dataclass
class DecodedTokens:
    """One utterance's token ids split into tags and text.

    ``text_positions`` index the text tokens in the full id sequence (tags included), so a caller can
    line them up with per-token alignment results.
    """

    text: str
    language: str = ""
    emotion: str = ""
    event: str = ""
    itn: bool | None = None
    text_ids: list[int] = field(default_factory=list)
    text_pieces: list[str] = field(default_factory=list)
    text_positions: list[int] = field(default_factory=list)


class Vocabulary:
    """Token id <-> piece string, with every ``<|...|>`` tag classified by its string."""

    def __init__(self, pieces: Sequence[str]):
        self.pieces = list(pieces)
        self.kinds = [tag_kind(p) for p in self.pieces]
        self.is_tag = np.array([k is not None for k in self.kinds], dtype=bool)
        self.tag_ids = {p: i for i, p in enumerate(self.pieces) if self.kinds[i] is not None}

    @classmethod
    def from_json(cls, path: str | Path) -> Vocabulary:
        """Read ``tokens.json``: a list of piece strings indexed by id (or a ``{id: piece}`` object)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(data, dict):
            pieces = [""] * (max(int(k) for k in data) + 1)
            for k, v in data.items():
                pieces[int(k)] = v
            data = pieces
        if not isinstance(data, list) or not all(isinstance(p, str) for p in data):
            raise ValueError(f"{path}: expected a JSON list of piece strings")
        return cls(data)

    def __len__(self) -> int:
        return len(self.pieces)

    def piece(self, token_id: int) -> str:
        return self.pieces[token_id]

    def id_of(self, piece: str) -> int:
        """Id of a piece (tags included); KeyError if the vocabulary has no such piece."""
        if piece in self.tag_ids:
            return self.tag_ids[piece]
        return self.pieces.index(piece)

    def decode(self, ids: Sequence[int]) -> DecodedTokens:
        """Split ``ids`` (CTC output, blanks removed) into the first tag of each kind and the text.

        ``language``, ``emotion`` and ``event`` are the tags' names without ``<|``/``|>``, ``""`` when
        the utterance has no such tag; ``text`` is the detokenized non-tag pieces, stripped.
        """
        tags: dict[str, str] = {}
        text_ids, text_pieces, positions = [], [], []
        for pos, token_id in enumerate(ids):
            token_id = int(token_id)
            if not 0 <= token_id < len(self.pieces):
                raise ValueError(
                    f"token id {token_id} is outside the vocabulary of {len(self.pieces)} pieces"
                )
            kind = self.kinds[token_id]
            if kind is None:
                text_ids.append(token_id)
                text_pieces.append(self.pieces[token_id])
                positions.append(pos)
            elif kind != OTHER and kind not in tags:
                tags[kind] = self.pieces[token_id][2:-2]
        itn = TEXTNORM.get(tags[ITN]) if ITN in tags else None
        return DecodedTokens(
            text=detokenize(text_pieces).strip(),
            language=tags.get(LANGUAGE, ""),
            emotion=tags.get(EMOTION, ""),
            event=tags.get(EVENT, ""),
            itn=itn,
            text_ids=text_ids,
            text_pieces=text_pieces,
            text_positions=positions,
        )


def strip_tags(text: str) -> str:
    """FunASR's raw output (``<|en|><|NEUTRAL|><|Speech|><|woitn|>hello``) without its tags, stripped."""
    return re.sub(r"<\|[^|]*\|>", "", text).strip()
