"""Transcript exports: SRT, WebVTT, plain text, JSON and Markdown minutes, as pure functions of a
:class:`speechlib.transcript.Transcript` that return ``str`` (encode as UTF-8).

Cues (SRT, WebVTT): one cue per segment, its text unchanged (no re-wrapping), except that a segment
longer than ``max_cue_s`` (:data:`MAX_CUE_S`, 7 s: the longest subtitle broadcasters' guidelines
allow on screen, e.g. Netflix's) is cut into several cues at word boundaries (:func:`cue_segments`),
when its words spell its text; without words it stays one cue. Segments from VAD are up to 30 s, so
without the cut a subtitle could stand for half a minute. Times are rounded to the millisecond.

Formats:

- SRT: 1-based cue numbers, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, text lines, a blank line after every
  cue; the speaker as a ``SPEAKER_00: `` prefix (SRT has no speaker field).
- WebVTT: a ``WEBVTT`` line and a blank line, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` with the
  speaker as a voice tag ``<v SPEAKER_00>``; ``&``, ``<``, ``>`` in text and speaker names are
  escaped as ``&amp;``, ``&lt;``, ``&gt;``.
- TXT: one line per segment, ``[HH:MM:SS] SPEAKER_00: text`` (time and speaker optional).
- JSON (:func:`to_json`): see its docstring; the segments are the stored shape
  (:meth:`speechlib.transcript.Segment.to_dict`), so the file reads back with
  ``Transcript.from_segments_json(doc["segments"], ...)``.
- Markdown minutes: a title, duration/language/speakers (with speaking time), the summary when
  given (Markdown, inserted as is), then the transcript by speaker.

Blank lines inside a segment's text (an edit) are dropped in cues: a blank line ends a cue.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from speechlib.transcript import Segment, Transcript, join_texts, line_breaks, s_to_ms, split_segment

__all__ = [
    "EXPORT_FORMATS",
    "JSON_FORMAT",
    "JSON_VERSION",
    "MAX_CUE_S",
    "PARAGRAPH_S",
    "ExportFormat",
    "cue_segments",
    "export_transcript",
    "format_timestamp",
    "to_json",
    "to_markdown",
    "to_srt",
    "to_txt",
    "to_vtt",
]

MAX_CUE_S = 7.0
"""A segment longer than this (seconds) is cut into cues at word boundaries (see module docstring)."""

PARAGRAPH_S = 60.0
"""Markdown minutes start a new paragraph for the same speaker after this many seconds."""

JSON_FORMAT = "intrascribe.transcript"
JSON_VERSION = 1


def format_timestamp(seconds: float, decimal_marker: str = ".", with_ms: bool = True) -> str:
    """``HH:MM:SS.mmm`` (or ``HH:MM:SS`` without ms) of a time in seconds, rounded to the nearest
    millisecond; negative times are 0; hours keep at least two digits (``100:00:00.000`` past 99 h)."""
    ms = max(s_to_ms(seconds), 0)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{text}{decimal_marker}{millis:03d}" if with_ms else text


def cue_segments(transcript: Transcript, max_cue_s: float | None = MAX_CUE_S) -> list[Segment]:
    """The segments as subtitle cues: each segment longer than ``max_cue_s`` seconds cut before the
    word where the cue would pass ``max_cue_s`` (only where a line may break,
    :func:`speechlib.transcript.line_breaks`; a single word group longer than that stays whole).
    Segments with blank text are left out. ``max_cue_s=None`` keeps one cue per segment."""
    cues: list[Segment] = []
    for seg in transcript.segments:
        if not seg.text.strip():
            continue
        breaks = line_breaks(seg) if max_cue_s is not None and seg.duration > max_cue_s else None
        if not breaks:
            cues.append(seg)
            continue
        cuts: list[int] = []
        cue_start = seg.start
        group_ends = [*breaks[1:], len(seg.words)]
        for b, end in zip(breaks, group_ends, strict=True):
            # the group of words [b, end) would take the cue past the limit: it starts a new cue
            if seg.words[end - 1].end - cue_start > max_cue_s:
                cuts.append(b)
                cue_start = seg.words[b].start
        cues += split_segment(seg, cuts)
    return cues


def _cue_lines(text: str) -> str:
    """Text lines without blank ones (a blank line would end the cue)."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def to_srt(transcript: Transcript, *, speakers: bool = True, max_cue_s: float | None = MAX_CUE_S) -> str:
    """SubRip: ``n``, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, the text (``SPEAKER_00: `` first when
    ``speakers`` and the segment has one), a blank line. Empty transcript -> ``""``."""
    blocks = []
    for n, cue in enumerate(cue_segments(transcript, max_cue_s), start=1):
        text = _cue_lines(cue.text)
        if speakers and cue.speaker:
            text = f"{_one_line(cue.speaker)}: {text}"
        start, end = format_timestamp(cue.start, ","), format_timestamp(cue.end, ",")
        blocks.append(f"{n}\n{start} --> {end}\n{text}\n\n")
    return "".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(transcript: Transcript, *, speakers: bool = True, max_cue_s: float | None = MAX_CUE_S) -> str:
    """WebVTT: ``WEBVTT``, a blank line, then per cue ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` and the text
    (escaped) after a voice tag ``<v SPEAKER_00>`` when ``speakers`` and the segment has one, each cue
    followed by a blank line. Empty transcript -> ``"WEBVTT\\n\\n"``."""
    blocks = ["WEBVTT\n\n"]
    for cue in cue_segments(transcript, max_cue_s):
        text = _vtt_escape(_cue_lines(cue.text))
        if speakers and cue.speaker:
            text = f"<v {_vtt_escape(_one_line(cue.speaker))}>{text}"
        blocks.append(f"{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}\n{text}\n\n")
    return "".join(blocks)


def to_txt(transcript: Transcript, *, timestamps: bool = True, speakers: bool = True) -> str:
    """Plain text, one line per segment: ``[HH:MM:SS] SPEAKER_00: text`` (start time and speaker
    each optional; line breaks inside a text become spaces). Empty transcript -> ``""``."""
    lines = []
    for seg in transcript.segments:
        text = _one_line(seg.text)
        if not text:
            continue
        if speakers and seg.speaker:
            text = f"{_one_line(seg.speaker)}: {text}"
        if timestamps:
            text = f"[{format_timestamp(seg.start, with_ms=False)}] {text}"
        lines.append(text + "\n")
    return "".join(lines)


def to_json(transcript: Transcript) -> str:
    """A JSON document (UTF-8 text, 2-space indent, keys in this fixed order)::

        {
          "format": "intrascribe.transcript",   # JSON_FORMAT
          "version": 1,                          # JSON_VERSION, raised on any incompatible change
          "language": "en" | null,               # SenseVoice code of the dominant language
          "duration": 12.5 | null,               # seconds of audio
          "text": "...",                         # the whole text (Transcript.text)
          "speakers": ["SPEAKER_00", ...],       # in order of first appearance
          "segments": [                          # the stored shape, Segment.to_dict()
            {"index": 1, "speaker": ..., "start_time": 0.0, "end_time": 1.5, "text": ...,
             "confidence_score": null, "is_final": true, "language": ..., "emotion": ...,
             "event": ..., "words": [{"word": ..., "start": ..., "end": ..., "speaker": ...,
             "probability": null}]}
          ]
        }

    Times are float seconds. Non-finite numbers cannot occur (the records refuse them)."""
    doc: dict[str, Any] = {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "language": transcript.language,
        "duration": transcript.duration,
        "text": transcript.text,
        "speakers": transcript.speakers,
        "segments": transcript.to_segments_json(),
    }
    return json.dumps(doc, ensure_ascii=False, indent=2, allow_nan=False) + "\n"


_MD_SPECIAL = set("\\`*_[]<>&#~")


def _md_escape(text: str) -> str:
    """Inline Markdown text shown literally (CommonMark backslash escapes); an underscore between
    letters/digits (``SPEAKER_00``) needs none and keeps none, for readable raw text."""
    text = _one_line(text)
    out = []
    for i, ch in enumerate(text):
        if ch == "_" and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum():
            out.append(ch)
        elif ch in _MD_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _clock(seconds: float) -> str:
    return format_timestamp(seconds, with_ms=False)


def to_markdown(
    transcript: Transcript,
    *,
    title: str | None = None,
    summary: str | None = None,
    paragraph_s: float = PARAGRAPH_S,
) -> str:
    """Markdown minutes::

        # <title, default "Transcript">

        - **Duration:** HH:MM:SS
        - **Language:** en                      (when known)
        - **Speakers:** SPEAKER_00 (00:01:10), SPEAKER_01 (00:00:20)   (speaking time; when any)

        ## Summary                              (when ``summary`` is given: Markdown, as is)

        ...

        ## Transcript

        **[00:00:01] SPEAKER_00:** text of consecutive segments of that speaker ...

    Consecutive segments of one speaker share a paragraph (:func:`speechlib.transcript.join_texts`)
    until it spans ``paragraph_s`` seconds. Title, speakers and text are escaped so they show as
    written; an empty transcript says ``_No speech._``."""
    lines = [f"# {_md_escape(title or '') or 'Transcript'}", ""]
    lines.append(f"- **Duration:** {_clock(transcript.end)}")
    if transcript.language:
        lines.append(f"- **Language:** {_md_escape(transcript.language)}")
    talk: dict[str, float] = {}
    for seg in transcript.segments:
        if seg.speaker is not None:
            talk[seg.speaker] = talk.get(seg.speaker, 0.0) + seg.duration
    if talk:
        listed = ", ".join(f"{_md_escape(sp)} ({_clock(t)})" for sp, t in talk.items())
        lines.append(f"- **Speakers:** {listed}")
    lines.append("")
    if summary and summary.strip():
        lines += ["## Summary", "", summary.strip(), ""]
    lines += ["## Transcript", ""]
    paragraphs: list[tuple[Segment, list[str]]] = []
    for seg in transcript.segments:
        if not seg.text.strip():
            continue
        if paragraphs:
            head, texts = paragraphs[-1]
            if head.speaker == seg.speaker and seg.end - head.start <= paragraph_s:
                texts.append(seg.text)
                continue
        paragraphs.append((seg, [seg.text]))
    if not paragraphs:
        lines += ["_No speech._", ""]
    for head, texts in paragraphs:
        label = f"[{_clock(head.start)}]"
        if head.speaker:
            label += f" {_md_escape(head.speaker)}"
        lines += [f"**{label}:** {_md_escape(join_texts(texts))}", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class ExportFormat:
    """One export format: its name (the ``format`` query value), media type and file extension."""

    name: str
    media_type: str
    extension: str
    render: Callable[..., str]


EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("srt", "application/x-subrip; charset=utf-8", "srt", to_srt),
        ExportFormat("vtt", "text/vtt; charset=utf-8", "vtt", to_vtt),
        ExportFormat("txt", "text/plain; charset=utf-8", "txt", to_txt),
        ExportFormat("json", "application/json", "json", to_json),
        ExportFormat("md", "text/markdown; charset=utf-8", "md", to_markdown),
    )
}


def export_transcript(
    transcript: Transcript, fmt: str, *, title: str | None = None, summary: str | None = None
) -> str:
    """``transcript`` rendered as ``fmt`` (a key of :data:`EXPORT_FORMATS`; ``title`` and ``summary``
    are used by ``md`` only). Raises ``ValueError`` naming the formats for an unknown one."""
    spec = EXPORT_FORMATS.get(fmt.lower())
    if spec is None:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if spec.name == "md":
        return to_markdown(transcript, title=title, summary=summary)
    return spec.render(transcript)
