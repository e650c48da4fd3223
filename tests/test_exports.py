"""speechlib.exports: SRT, WebVTT, TXT, JSON and Markdown from a Transcript.

Expected files are written by hand from the formats' specifications, and every subtitle export is
read back with an independent parser (``srt``, ``webvtt-py``; Markdown with ``markdown-it-py``).
"""

from __future__ import annotations

import html
import json
import random
from datetime import timedelta

import pytest
import srt
import webvtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from speechlib.exports import (
    EXPORT_FORMATS,
    MAX_CUE_S,
    cue_segments,
    export_transcript,
    format_timestamp,
    to_json,
    to_markdown,
    to_srt,
    to_txt,
    to_vtt,
)
from speechlib.transcript import Segment, Transcript, Word, ms_to_s


def seg(index, start, end, text, speaker=None, words=(), **kw) -> Segment:
    return Segment(index=index, start=start, end=end, text=text, speaker=speaker, words=words, **kw)


def meeting() -> Transcript:
    return Transcript(
        (
            seg(1, 0.0, 2.5, "Hello & welcome <everyone>.", "SPEAKER_00", language="en"),
            seg(2, 3661.007, 3663.5, "你好，我们开会。", "Ann & <Bo>", language="zh"),
            seg(3, 3664.0, 3665.25, "no speaker", None),
        ),
        language="en",
        duration=3700.0,
    )


def vtt(text: str) -> webvtt.WebVTT:
    return webvtt.from_string(text)


# --- timestamps ----------------------------------------------------------------------------------


def test_format_timestamp_by_hand():
    assert format_timestamp(0.0) == "00:00:00.000"
    assert format_timestamp(0.0, ",") == "00:00:00,000"
    assert format_timestamp(3661.007, ",") == "01:01:01,007"
    assert format_timestamp(59.9996) == "00:01:00.000"  # rounds to the ms, carrying into minutes
    assert format_timestamp(1.0004) == "00:00:01.000"
    assert format_timestamp(360_000.0) == "100:00:00.000"
    assert format_timestamp(-0.5) == "00:00:00.000"
    assert format_timestamp(3599.9, with_ms=False) == "00:59:59"


def test_format_timestamp_is_exact_for_every_ms():
    rng = random.Random(1)
    for ms in [0, 1, 999, 1000, 59_999, 60_000, 3_599_999, 3_600_000] + [
        rng.randrange(0, 360_000_000) for _ in range(5000)
    ]:
        h, m, s, f = ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60, ms % 1000
        assert format_timestamp(ms_to_s(ms), ",") == f"{h:02d}:{m:02d}:{s:02d},{f:03d}"


# --- SRT -------------------------------------------------------------------------------------------

MEETING_SRT = """\
1
00:00:00,000 --> 00:00:02,500
SPEAKER_00: Hello & welcome <everyone>.

2
01:01:01,007 --> 01:01:03,500
Ann & <Bo>: 你好，我们开会。

3
01:01:04,000 --> 01:01:05,250
no speaker

"""


def test_srt_by_hand_and_parsed():
    out = to_srt(meeting())
    assert out == MEETING_SRT
    subs = list(srt.parse(out))
    assert [s.index for s in subs] == [1, 2, 3]
    assert subs[1].start == timedelta(hours=1, minutes=1, seconds=1, milliseconds=7)
    assert subs[1].end == timedelta(hours=1, minutes=1, seconds=3, milliseconds=500)
    assert [s.content for s in subs] == [
        "SPEAKER_00: Hello & welcome <everyone>.",
        "Ann & <Bo>: 你好，我们开会。",
        "no speaker",
    ]
    assert srt.compose(subs) == out  # the library writes the same bytes
    assert to_srt(meeting(), speakers=False).splitlines()[2] == "Hello & welcome <everyone>."


def test_srt_drops_blank_lines_inside_a_cue():
    t = Transcript((seg(1, 1.0, 2.0, "line one\n\n  \nline two", "A"), seg(2, 2.0, 3.0, "   ")))
    out = to_srt(t)
    assert out == "1\n00:00:01,000 --> 00:00:02,000\nA: line one\nline two\n\n"
    (sub,) = srt.parse(out)
    assert sub.content == "A: line one\nline two"


# --- WebVTT ----------------------------------------------------------------------------------------

MEETING_VTT = """\
WEBVTT

00:00:00.000 --> 00:00:02.500
<v SPEAKER_00>Hello &amp; welcome &lt;everyone&gt;.

01:01:01.007 --> 01:01:03.500
<v Ann &amp; &lt;Bo&gt;>你好，我们开会。

01:01:04.000 --> 01:01:05.250
no speaker

"""


def test_vtt_by_hand_and_parsed():
    out = to_vtt(meeting())
    assert out == MEETING_VTT
    captions = vtt(out).captions
    assert [(c.start, c.end) for c in captions] == [
        ("00:00:00.000", "00:00:02.500"),
        ("01:01:01.007", "01:01:03.500"),
        ("01:01:04.000", "01:01:05.250"),
    ]
    assert [c.voice and html.unescape(c.voice) for c in captions] == ["SPEAKER_00", "Ann & <Bo>", None]
    assert [html.unescape(c.text) for c in captions] == [
        "Hello & welcome <everyone>.",
        "你好，我们开会。",
        "no speaker",
    ]


def test_vtt_escapes_an_arrow_in_text():
    out = to_vtt(Transcript((seg(1, 0.0, 1.0, "a --> b & c"),)))
    assert out == "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\na --&gt; b &amp; c\n\n"
    (c,) = vtt(out).captions
    assert html.unescape(c.text) == "a --> b & c"


# --- long segments -----------------------------------------------------------------------------------


def long_segment(with_words: bool = True) -> Segment:
    text = " ".join(f"w{i}" for i in range(20))
    words = tuple(Word(float(i), i + 0.8, f"w{i}", "A") for i in range(20)) if with_words else ()
    return seg(1, 0.0, 20.0, text, "A", words)


def test_long_segment_is_cut_into_cues_at_word_boundaries():
    assert MAX_CUE_S == 7.0
    out = to_srt(Transcript((long_segment(),)), speakers=False)
    # greedy: w7 would end at 7.8 s > 7 s after the cue's start, so it starts cue 2 (at 7.0 s); w14 likewise
    assert out == (
        "1\n00:00:00,000 --> 00:00:06,800\nw0 w1 w2 w3 w4 w5 w6\n\n"
        "2\n00:00:07,000 --> 00:00:13,800\nw7 w8 w9 w10 w11 w12 w13\n\n"
        "3\n00:00:14,000 --> 00:00:20,000\nw14 w15 w16 w17 w18 w19\n\n"
    )
    assert " ".join(s.content for s in srt.parse(out)) == long_segment().text
    captions = vtt(to_vtt(Transcript((long_segment(),)))).captions
    assert [c.voice for c in captions] == ["A", "A", "A"] and captions[2].start == "00:00:14.000"


def test_long_segment_stays_whole_without_words_or_limit():
    for t, limit in ((Transcript((long_segment(False),)), MAX_CUE_S), (Transcript((long_segment(),)), None)):
        (cue,) = list(srt.parse(to_srt(t, max_cue_s=limit)))
        assert (cue.start, cue.end) == (timedelta(0), timedelta(seconds=20))
    assert [c.text for c in cue_segments(Transcript((long_segment(),)), 10.0)] == [
        " ".join(f"w{i}" for i in range(10)),
        " ".join(f"w{i}" for i in range(10, 20)),
    ]


def test_long_cjk_segment_cues_keep_text_without_spaces():
    chars = "我们今天讨论项目进度然后确定下周的计划"
    words = tuple(Word(i * 0.5, i * 0.5 + 0.4, ch) for i, ch in enumerate(chars))
    t = Transcript((seg(1, 0.0, 9.5, chars, "B", words),))
    subs = list(srt.parse(to_srt(t, speakers=False)))
    assert [s.content for s in subs] == [chars[:14], chars[14:]]  # char 14 would end at 7.4 s
    assert "".join(s.content for s in subs) == chars


# --- TXT, JSON -------------------------------------------------------------------------------------


def test_txt_by_hand():
    assert to_txt(meeting()) == (
        "[00:00:00] SPEAKER_00: Hello & welcome <everyone>.\n[01:01:01] Ann & <Bo>: 你好，我们开会。\n[01:01:04] no speaker\n"
    )
    assert to_txt(meeting(), timestamps=False, speakers=False) == (
        "Hello & welcome <everyone>.\n你好，我们开会。\nno speaker\n"
    )
    assert to_txt(Transcript((seg(1, 0, 1, "two\nlines", "A"),)), timestamps=False) == "A: two lines\n"


def test_json_document():
    t = meeting()
    out = to_json(t)
    doc = json.loads(out)
    assert list(doc) == ["format", "version", "language", "duration", "text", "speakers", "segments"]
    assert (doc["format"], doc["version"], doc["language"], doc["duration"]) == (
        "intrascribe.transcript",
        1,
        "en",
        3700.0,
    )
    assert doc["text"] == "Hello & welcome <everyone>. 你好，我们开会。 no speaker"
    assert doc["speakers"] == ["SPEAKER_00", "Ann & <Bo>"]
    assert doc["segments"][1]["start_time"] == 3661.007 and doc["segments"][1]["speaker"] == "Ann & <Bo>"
    assert "你好" in out  # UTF-8 text, not \\u escapes
    back = Transcript.from_segments_json(doc["segments"], language=doc["language"], duration=doc["duration"])
    assert back == t


# --- Markdown ---------------------------------------------------------------------------------------

MINUTES_MD = """\
# Weekly \\*sync\\* \\& \\<plan\\>

- **Duration:** 00:01:30
- **Language:** en
- **Speakers:** SPEAKER_00 (00:00:03), Ann \\& \\<Bo\\> (00:00:05)

## Summary

- Decided X
- Ann to follow up

## Transcript

**[00:00:00] SPEAKER_00:** Let's use \\*stars\\* and \\[links\\](http://x) \\<b\\>bold\\</b\\> Second part.

**[00:01:10] Ann \\& \\<Bo\\>:** 好的

**[00:01:20]:** ok
"""


def minutes_transcript() -> Transcript:
    return Transcript(
        (
            seg(1, 0.0, 2.5, "Let's use *stars* and [links](http://x) <b>bold</b>", "SPEAKER_00"),
            seg(2, 3.0, 4.0, "Second part.", "SPEAKER_00"),
            seg(3, 70.0, 75.5, "好的", "Ann & <Bo>"),
            seg(4, 80.0, 81.0, "ok", None),
        ),
        language="en",
        duration=90.5,
    )


def test_markdown_minutes_by_hand_and_rendered():
    out = to_markdown(
        minutes_transcript(), title="Weekly *sync* & <plan>", summary="- Decided X\n- Ann to follow up\n"
    )
    assert out == MINUTES_MD
    page = MarkdownIt("commonmark").render(out)
    assert "<h1>Weekly *sync* &amp; &lt;plan&gt;</h1>" in page
    assert "<ul>\n<li>Decided X</li>\n<li>Ann to follow up</li>\n</ul>" in page
    assert (
        "<p><strong>[00:00:00] SPEAKER_00:</strong> Let's use *stars* and [links](http://x) "
        "&lt;b&gt;bold&lt;/b&gt; Second part.</p>"
    ) in page
    assert "<p><strong>[00:01:10] Ann &amp; &lt;Bo&gt;:</strong> 好的</p>" in page
    assert "<em>" not in page and "<a " not in page and "<b>" not in page


def test_markdown_paragraphs_split_by_speaker_and_length():
    t = Transcript(tuple(seg(i + 1, 20.0 * i, 20.0 * i + 15, f"part {i}.", "A") for i in range(5)))
    out = to_markdown(t, paragraph_s=60.0)
    # 0-75 s would pass 60 s with part 3, so part 3 starts a new paragraph at 60 s
    assert "**[00:00:00] A:** part 0. part 1. part 2.\n\n**[00:01:00] A:** part 3. part 4.\n" in out
    assert out.startswith(
        "# Transcript\n\n- **Duration:** 00:01:35\n- **Speakers:** A (00:01:15)\n\n## Transcript\n"
    )


# --- edge cases, dispatch ----------------------------------------------------------------------------


def test_empty_transcript_in_every_format():
    t = Transcript()
    assert to_srt(t) == "" and list(srt.parse(to_srt(t))) == []
    assert to_vtt(t) == "WEBVTT\n\n" and vtt(to_vtt(t)).captions == []
    assert to_txt(t) == ""
    assert json.loads(to_json(t)) == {
        "format": "intrascribe.transcript",
        "version": 1,
        "language": None,
        "duration": None,
        "text": "",
        "speakers": [],
        "segments": [],
    }
    assert to_markdown(t) == "# Transcript\n\n- **Duration:** 00:00:00\n\n## Transcript\n\n_No speech._\n"


def test_export_transcript_dispatch():
    t = minutes_transcript()
    assert export_transcript(t, "srt") == to_srt(t)
    assert export_transcript(t, "VTT") == to_vtt(t)
    assert export_transcript(t, "txt") == to_txt(t)
    assert export_transcript(t, "json") == to_json(t)
    assert export_transcript(t, "md", title="T", summary="S") == to_markdown(t, title="T", summary="S")
    assert {k: v.media_type.split(";")[0] for k, v in EXPORT_FORMATS.items()} == {
        "srt": "application/x-subrip",
        "vtt": "text/vtt",
        "txt": "text/plain",
        "json": "application/json",
        "md": "text/markdown",
    }
    with pytest.raises(ValueError, match="srt, vtt, txt, json, md"):
        export_transcript(t, "docx")


_ALPHABET = st.sampled_from(list("abcXYZ 019.,'?&<>-你好。，\n"))


@st.composite
def _transcripts(draw):
    segments, t = [], 0
    for i in range(draw(st.integers(0, 6))):
        start = t + draw(st.integers(0, 5000))
        end = start + draw(st.integers(0, 40_000))
        t = end
        text = draw(st.text(_ALPHABET, max_size=30))
        segments.append(
            seg(i + 1, ms_to_s(start), ms_to_s(end), text, draw(st.sampled_from([None, "S0", "A & <B>"])))
        )
    return Transcript(tuple(segments))


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_transcripts())
def test_subtitles_parse_back_property(t):
    spoken = [s for s in t.segments if s.text.strip()]

    def squash(x: str) -> str:
        return " ".join(x.split())

    subs = list(srt.parse(to_srt(t)))
    assert [s.index for s in subs] == list(range(1, len(spoken) + 1))
    for sub, s in zip(subs, spoken, strict=True):
        prefix = f"{s.speaker}: " if s.speaker else ""
        assert squash(sub.content) == squash(prefix + s.text)
        assert sub.start == timedelta(milliseconds=round(s.start * 1000))
    captions = vtt(to_vtt(t)).captions
    assert len(captions) == len(spoken)
    for c, s in zip(captions, spoken, strict=True):
        assert squash(html.unescape(c.text)) == squash(s.text)
        assert (c.voice and html.unescape(c.voice)) == s.speaker
