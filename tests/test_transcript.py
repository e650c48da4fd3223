"""speechlib.transcript: the Segment/Word record, ASR -> words, stored JSON, speakers.

Expected values are written by hand from the rules in the module docstring, never produced by the
code under test.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechlib.diarization.turns import SpeakerTurn
from speechlib.transcript import (
    MAX_WORD_S,
    Segment,
    Transcript,
    Word,
    attribute_speakers,
    dominant_language,
    join_texts,
    line_breaks,
    ms_to_s,
    rename_speaker,
    s_to_ms,
    segment_from_asr,
    split_segment,
    word_spans,
    words_from_tokens,
)

S = "\u2581"  # sentencepiece's word-start mark


def seg(index, start, end, text, words=(), speaker=None, **kw) -> Segment:
    return Segment(index=index, start=start, end=end, text=text, speaker=speaker, words=words, **kw)


def words_of(*items) -> tuple[Word, ...]:
    """Words from (text, start_s, end_s) triples."""
    return tuple(Word(start, end, text) for text, start, end in items)


def turns(*items) -> list[SpeakerTurn]:
    return [SpeakerTurn(a, b, sp) for a, b, sp in items]


# --- time units ------------------------------------------------------------------------------------


def test_ms_to_seconds_is_the_decimal_value_and_inverts():
    rng = random.Random(0)
    samples = [0, 1, 5, 10, 999, 1000, 1001, 1234, 59_999, 3_600_000, 86_399_999, 360_000_000]
    samples += [rng.randrange(0, 400_000_000) for _ in range(5_000)]
    for ms in samples:
        decimal = f"{ms // 1000}.{ms % 1000:03d}"  # the exact value, written by hand
        s = ms_to_s(ms)
        assert type(s) is float
        assert s == float(decimal)  # float() of a decimal string is the nearest double
        assert s_to_ms(s) == ms
        assert json.loads(json.dumps(s)) == s
    assert ms_to_s(np.int32(1500)) == 1.5 and type(ms_to_s(np.int64(7))) is float


def test_offsets_are_added_in_ms_before_converting():
    # a chunk at 7913.390 s, a token 16.234 s into it: adding seconds would give 7929.624000000001
    assert 7913.390 + 16.234 != 7929.624
    (w,) = words_from_tokens([f"{S}hi"], [[16_234, 16_500]], offset_ms=7_913_390)
    assert w.start == 7929.624 and w.end == 7929.89
    s = segment_from_asr(start_ms=16_234, end_ms=17_000, text="hi", offset_ms=7_913_390)
    assert (s.start, s.end) == (7929.624, 7930.39)


# --- words from ASR tokens ---------------------------------------------------------------------------


def test_words_from_tokens_merges_pieces_like_word_times():
    pieces = [f"{S}Hel", "lo", ",", S, f"{S}wor", "ld", "."]
    times = [[0, 120], [120, 300], [300, 330], [330, 340], [400, 520], [520, 700], [700, 760]]
    words = words_from_tokens(pieces, np.array(times, np.int32))
    # the first piece loses its "▁" so "Hel"+"lo" merge (FunASR would keep "▁Hel" and "lo" apart)
    assert [(w.text, w.start, w.end) for w in words] == [
        ("Hello", 0.0, 0.3),
        (",", 0.3, 0.33),
        ("world", 0.4, 0.7),
        (".", 0.7, 0.76),
    ]
    assert all(w.speaker is None and w.probability is None for w in words)


def test_words_from_tokens_cjk_each_character_is_a_word():
    words = words_from_tokens(
        ["你", "好", "，", "世", "界"], [[0, 60], [60, 120], [120, 130], [200, 260], [260, 330]]
    )
    assert [w.text for w in words] == ["你", "好", "，", "世", "界"]
    assert [w.start for w in words] == [0.0, 0.06, 0.12, 0.2, 0.26]


def test_words_from_tokens_decodes_byte_pieces():
    # "你" is E4 BD A0 in UTF-8; sentencepiece's byte fallback emits it as three pieces
    words = words_from_tokens(["<0xE4>", "<0xBD>", "<0xA0>", "好"], [[0, 10], [10, 20], [20, 90], [90, 150]])
    assert [(w.text, w.start, w.end) for w in words] == [("你", 0.0, 0.09), ("好", 0.09, 0.15)]


def test_word_end_is_capped_and_never_before_start():
    words = words_from_tokens([f"{S}long", f"{S}odd"], [[1000, 9000], [9500, 9400]])
    assert (words[0].start, words[0].end) == (1.0, 1.0 + MAX_WORD_S)
    assert (words[1].start, words[1].end) == (9.5, 9.5)
    (w,) = words_from_tokens([f"{S}long"], [[1000, 9000]], max_word_s=0.25)
    assert w.end == 1.25
    with pytest.raises(ValueError, match="max_word_s"):
        words_from_tokens([f"{S}x"], [[0, 10]], max_word_s=0)


def test_words_from_tokens_rejects_mismatched_times_and_accepts_none():
    with pytest.raises(ValueError, match="2 pieces but 1"):
        words_from_tokens(["a", "b"], [[0, 1]])
    assert words_from_tokens([], []) == ()
    assert words_from_tokens([S], [[0, 10]]) == ()  # a lone "▁" is no word


def test_segment_from_asr_keeps_text_offsets_and_spans_its_words():
    pieces = ["我", "们", "开", "会", "。"]
    times = [[80, 200], [200, 330], [400, 520], [520, 640], [640, 700]]
    s = segment_from_asr(
        start_ms=100,
        end_ms=650,
        text=" 我们开会。 ",
        pieces=pieces,
        token_times_ms=times,
        language="zh",
        emotion="",
        event="Speech",
        offset_ms=60_000,
    )
    assert s.text == "我们开会。"  # exactly the ASR text (stripped), not the words re-joined
    assert (s.start, s.end) == (60.08, 60.7)  # VAD 60.1-60.65 widened to its words
    assert [w.text for w in s.words] == ["我", "们", "开", "会", "。"]
    assert s.words[0].start == 60.08 and s.words[-1].end == 60.7
    assert (s.language, s.emotion, s.event) == ("zh", None, "Speech")
    assert s.is_final and s.confidence is None and s.speaker is None


def test_segment_from_asr_without_tokens():
    s = segment_from_asr(start_ms=1500, end_ms=2750, text="hello there")
    assert (s.start, s.end, s.text, s.words) == (1.5, 2.75, "hello there", ())


# --- records ---------------------------------------------------------------------------------------


def test_records_refuse_non_finite_and_reversed_times():
    with pytest.raises(ValueError, match="finite"):
        Word(math.nan, 1.0, "x")
    with pytest.raises(ValueError, match="finite"):
        seg(1, 0.0, math.inf, "x")
    with pytest.raises(ValueError, match="ends before it starts"):
        seg(1, 2.0, 1.0, "x")
    s = seg(1, 0, 1, "x", words=[Word(0, 1, "x")])
    assert isinstance(s.words, tuple) and type(s.start) is float


def _sample_transcript() -> Transcript:
    w = (
        Word(0.5, 0.9, "Hello", "SPEAKER_00", 0.91),
        Word(0.9, 0.95, ",", "SPEAKER_00", None),
        Word(1.0, 1.4, "world", "SPEAKER_00", 0.5),
    )
    return Transcript(
        (
            seg(
                1, 0.48, 1.5, "Hello, world", w, "SPEAKER_00", language="en", emotion="HAPPY", event="Speech"
            ),
            seg(3, 2.0, 3.25, "你好。", (), "SPEAKER_01", language="zh", confidence=0.8, is_final=False),
        ),
        language="en",
        duration=4.0,
    )


def test_stored_json_shape_written_by_hand():
    rows = _sample_transcript().to_segments_json()
    assert rows[1] == {
        "index": 3,
        "speaker": "SPEAKER_01",
        "start_time": 2.0,
        "end_time": 3.25,
        "text": "你好。",
        "confidence_score": 0.8,
        "is_final": False,
        "language": "zh",
        "emotion": None,
        "event": None,
        "words": [],
    }
    assert list(rows[0])[:7] == [
        "index",
        "speaker",
        "start_time",
        "end_time",
        "text",
        "confidence_score",
        "is_final",
    ]
    assert rows[0]["words"][0] == {
        "word": "Hello",
        "start": 0.5,
        "end": 0.9,
        "speaker": "SPEAKER_00",
        "probability": 0.91,
    }


def test_stored_json_round_trip_is_exact():
    t = _sample_transcript()
    text = json.dumps(t.to_segments_json(), ensure_ascii=False)
    back = Transcript.from_segments_json(json.loads(text), language="en", duration=4.0)
    assert back == t
    assert [s.index for s in back.segments] == [1, 3]  # stored indexes (gaps too) are kept


def test_reads_the_originals_rows():
    original = [
        {
            "index": 1,
            "speaker": "SPEAKER_00",
            "start_time": 0,
            "end_time": 2.5,
            "text": "你好",
            "confidence_score": None,
            "is_final": True,
        },
        {"speaker": "speaker_1", "start_time": 3.0, "end_time": 4, "text": "好的"},
    ]
    t = Transcript.from_segments_json(original)
    a, b = t.segments
    assert (a.index, a.start, a.end, a.speaker, a.words, a.language, a.confidence) == (
        1,
        0.0,
        2.5,
        "SPEAKER_00",
        (),
        None,
        None,
    )
    assert (b.index, b.is_final, b.speaker) == (2, True, "speaker_1")
    with pytest.raises(ValueError, match="start_time"):
        Transcript.from_segments_json([{"index": 1, "speaker": "x", "timestamp": "10:00", "text": "live"}])


_times = st.integers(min_value=0, max_value=10 * 3_600_000)
_text = st.text(min_size=1, max_size=20)
_label = st.one_of(st.none(), st.sampled_from(["SPEAKER_00", "SPEAKER_01", "Ann & <Bo>"]))


@st.composite
def _segments(draw):
    a, b = sorted((draw(_times), draw(_times)))
    words = []
    for _ in range(draw(st.integers(0, 4))):
        x, y = sorted((draw(_times), draw(_times)))
        prob = draw(st.one_of(st.none(), st.floats(0, 1)))
        words.append(Word(ms_to_s(x), ms_to_s(y), draw(_text), draw(_label), prob))
    return Segment(
        index=draw(st.integers(0, 10_000)),
        start=ms_to_s(a),
        end=draw(st.sampled_from([ms_to_s(b), ms_to_s(b) + 1e-7])),
        text=draw(st.text(max_size=40)),
        speaker=draw(_label),
        language=draw(st.sampled_from([None, "en", "zh", "yue"])),
        emotion=draw(st.sampled_from([None, "NEUTRAL"])),
        event=draw(st.sampled_from([None, "Speech", "BGM"])),
        words=tuple(words),
        confidence=draw(st.one_of(st.none(), st.floats(0, 1))),
        is_final=draw(st.booleans()),
    )


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(_segments(), max_size=5))
def test_stored_json_round_trip_property(segments):
    t = Transcript(tuple(segments))
    assert Transcript.from_segments_json(json.loads(json.dumps(t.to_segments_json()))) == t


def test_from_segments_drops_blank_sorts_numbers_and_picks_language():
    t = Transcript.from_segments(
        [
            seg(0, 5.0, 6.0, "later", language="en"),
            seg(0, 1.0, 2.0, "   ", language="zh"),
            seg(0, 0.0, 3.0, "早上好", language="zh"),
            seg(0, 3.0, 4.5, "ok", language="nospeech"),
        ],
        duration=7,
    )
    assert [(s.index, s.text) for s in t.segments] == [(1, "早上好"), (2, "ok"), (3, "later")]
    assert t.language == "zh" and t.duration == 7.0  # zh 3 s > en 1 s; nospeech never counts
    assert dominant_language([seg(1, 0, 1, "", language="en")]) is None
    assert Transcript.from_segments([]) == Transcript((), None, None)


def test_join_texts_spaces_only_between_spaced_scripts():
    assert join_texts(["你好。", "我们开会", "OK", "then.", " ", "안녕하세요", "여러분"]) == (
        "你好。我们开会 OK then. 안녕하세요 여러분"
    )
    assert join_texts([]) == ""


# --- line breaks and splitting -------------------------------------------------------------------


def test_word_spans_and_line_breaks():
    text = "I don't know, 3.14 (maybe) 你好，我们"
    w = words_of(
        ("I", 0, 0.1), ("don", 0.1, 0.2), ("'", 0.2, 0.2), ("t", 0.2, 0.3), ("know", 0.3, 0.5), (",", 0.5, 0.5),
        ("3", 0.6, 0.7), (".", 0.7, 0.7), ("14", 0.7, 0.8), ("(", 0.8, 0.8), ("maybe", 0.8, 1.0), (")", 1.0, 1.0),
        ("你", 1.1, 1.2), ("好", 1.2, 1.3), ("，", 1.3, 1.3), ("我", 1.3, 1.4), ("们", 1.4, 1.5),
    )  # fmt: skip
    s = seg(1, 0, 1.5, text, w)
    assert word_spans(text, w)[:3] == [(0, 1), (2, 5), (5, 6)]
    # breaks before: don, know, 3, ( and 你 (after a space), 好 我 们 (CJK); never before ' t , . 14 maybe ) ，
    assert line_breaks(s) == [1, 4, 6, 9, 12, 13, 15, 16]
    assert word_spans("I do not", words_of(("I", 0, 1), ("not", 1, 2))) is None  # "do" is not a word
    assert word_spans("hello", words_of(("hello", 0, 1), ("x", 1, 2))) is None
    assert line_breaks(seg(1, 0, 1, "edited text", words_of(("original", 0, 1)))) is None


def test_split_segment_slices_text_and_times():
    text = "Yes. 好的，谢谢"
    w = words_of(
        ("Yes", 1.0, 1.3),
        (".", 1.3, 1.35),
        ("好", 2.0, 2.2),
        ("的", 2.2, 2.4),
        ("，", 2.4, 2.45),
        ("谢", 2.6, 2.8),
        ("谢", 2.8, 3.0),
    )
    s = seg(7, 0.9, 3.4, text, w, "SPEAKER_00", language="zh")
    a, b, c = split_segment(s, [2, 5])
    assert (a.text, a.start, a.end, len(a.words)) == ("Yes.", 0.9, 1.35, 2)
    assert (b.text, b.start, b.end, len(b.words)) == ("好的，", 2.0, 2.45, 3)
    assert (c.text, c.start, c.end, len(c.words)) == ("谢谢", 2.6, 3.4, 2)
    assert all(p.index == 7 and p.speaker == "SPEAKER_00" and p.language == "zh" for p in (a, b, c))
    assert split_segment(s, []) == [s]
    for bad in ([0], [7], [3, 3], [4, 2]):
        with pytest.raises(ValueError, match="cut points"):
            split_segment(s, bad)
    with pytest.raises(ValueError, match="do not spell"):
        split_segment(seg(1, 0, 2, "edited", words_of(("a", 0, 1), ("b", 1, 2))), [1])


# --- speaker attribution -------------------------------------------------------------------------


def test_attribute_splits_where_the_speaker_changes_between_words():
    w = words_of(
        ("So", 0.0, 0.3),
        ("we", 0.4, 0.6),
        ("agree", 0.6, 1.0),
        ("?", 1.0, 1.05),
        ("Yes", 1.5, 1.9),
        ("sure", 2.0, 2.4),
        (".", 2.4, 2.45),
    )
    t = Transcript((seg(1, 0.0, 2.6, "So we agree? Yes sure.", w),), "en", 3.0)
    out = attribute_speakers(t, turns((0.0, 1.2, "SPEAKER_00"), (1.3, 3.0, "SPEAKER_01")))
    assert [(s.index, s.speaker, s.text, s.start, s.end) for s in out.segments] == [
        (1, "SPEAKER_00", "So we agree?", 0.0, 1.05),
        (2, "SPEAKER_01", "Yes sure.", 1.5, 2.6),
    ]
    assert [w.speaker for w in out.segments[0].words] == ["SPEAKER_00"] * 4
    assert [w.speaker for w in out.segments[1].words] == ["SPEAKER_01"] * 3
    assert (out.language, out.duration) == ("en", 3.0)


def test_attribute_cjk_split_reproduces_text_exactly():
    text = "你好吗？我很好，谢谢。"
    w = words_of(
        ("你", 0.0, 0.2), ("好", 0.2, 0.4), ("吗", 0.4, 0.6), ("？", 0.62, 0.68), ("我", 0.8, 1.0), ("很", 1.0, 1.2),
        ("好", 1.2, 1.4), ("，", 1.42, 1.48), ("谢", 1.6, 1.8), ("谢", 1.8, 2.0), ("。", 2.02, 2.08),
    )  # fmt: skip
    t = Transcript((seg(1, 0.0, 2.2, text, w),))
    tt = turns((0.0, 0.61, "A"), (0.61, 3.0, "B"))
    # on its own "？" lies in B's turn, but it cannot start a line: it goes with "吗" (A)
    assert attribute_speakers(t, tt, split=False).segments[0].words[3].speaker == "B"
    out = attribute_speakers(t, tt)
    assert [(s.speaker, s.text) for s in out.segments] == [("A", "你好吗？"), ("B", "我很好，谢谢。")]
    assert "".join(s.text for s in out.segments) == text
    assert [(s.start, s.end) for s in out.segments] == [(0.0, 0.68), (0.8, 2.2)]


def test_punctuation_and_fragments_follow_their_word():
    w = words_of(("I", 0.0, 0.2), ("don", 0.3, 0.5), ("'", 0.5, 0.55), ("t", 0.55, 0.9), (".", 0.9, 1.0))
    t = Transcript((seg(1, 0.0, 1.0, "I don't.", w),))
    # "t" and "." lie in B's turn, but "don't." is one group: don 0.2 s + ' 0.05 s (A) vs t 0.35 s + . 0.1 s (B)
    out = attribute_speakers(t, turns((0.0, 0.55, "A"), (0.55, 2.0, "B")))
    assert [(s.speaker, s.text) for s in out.segments] == [("A", "I"), ("B", "don't.")]


def test_attribute_without_split_keeps_word_speakers_and_votes_by_time():
    # two short words of A (0.2 s) vs one long word of B (0.5 s): B has most of the time
    w = words_of(("a", 0.0, 0.1), ("b", 0.1, 0.2), ("longword", 1.0, 1.5))
    t = Transcript((seg(1, 0.0, 1.5, "a b longword", w),))
    tt = turns((0.0, 0.5, "A"), (0.9, 2.0, "B"))
    out = attribute_speakers(t, tt, split=False)
    (s,) = out.segments
    assert s.speaker == "B" and [x.speaker for x in s.words] == ["A", "A", "B"]
    assert len(attribute_speakers(t, tt).segments) == 2


def test_edited_text_is_never_split():
    w = words_of(("hello", 0.0, 0.5), ("there", 1.0, 1.8))
    t = Transcript((seg(1, 0.0, 2.0, "Hello there, friend", w),))
    (s,) = attribute_speakers(t, turns((0.0, 0.6, "A"), (0.9, 2.0, "B"))).segments
    assert (s.text, s.speaker, [x.speaker for x in s.words]) == ("Hello there, friend", "B", ["A", "B"])


def test_segments_without_words_and_nearest_turn_fallback():
    t = Transcript((seg(1, 0.0, 1.0, "no words here"), seg(2, 10.0, 11.0, "far away")))
    out = attribute_speakers(t, turns((0.2, 0.8, "A"), (5.0, 6.0, "B"), (12.5, 13.0, "C")))
    assert [s.speaker for s in out.segments] == ["A", "C"]  # 10-11 is 1.5 s from C, 4 s from B


def test_no_turns_gives_no_speakers_and_empty_transcript_stays_empty():
    t = Transcript((seg(1, 0.0, 1.0, "hi", words_of(("hi", 0.0, 1.0))),))
    out = attribute_speakers(t, [])
    assert out.segments[0].speaker is None and out.segments[0].words[0].speaker is None
    assert attribute_speakers(Transcript(), turns((0, 1, "A"))) == Transcript()


def test_one_word_transcript():
    t = Transcript.from_segments(
        [segment_from_asr(start_ms=0, end_ms=400, text="Hi", pieces=[f"{S}Hi"], token_times_ms=[[30, 390]])]
    )
    (s,) = attribute_speakers(t, turns((0.0, 5.0, "SPEAKER_03"))).segments
    assert (s.index, s.text, s.speaker, s.words[0].speaker, s.start, s.end) == (
        1,
        "Hi",
        "SPEAKER_03",
        "SPEAKER_03",
        0.0,
        0.4,
    )


def test_word_cap_keeps_a_word_out_of_the_next_speakers_turn():
    # the CTC span of "okay" runs 1.0-6.0 s over a silence into B's turn (2.5-8 s)
    pieces, times = [f"{S}okay"], [[1000, 6000]]
    tt = turns((0.5, 2.0, "A"), (2.5, 8.0, "B"))

    def speaker(max_word_s):
        s = segment_from_asr(
            start_ms=1000,
            end_ms=1600,
            text="okay",
            pieces=pieces,
            token_times_ms=times,
            max_word_s=max_word_s,
        )
        return attribute_speakers(Transcript((s,)), tt).segments[0].words[0]

    capped = speaker(MAX_WORD_S)
    assert (capped.end, capped.speaker) == (2.5, "A")
    assert speaker(60.0).speaker == "B"  # uncapped, the stretched word would go to B


def test_overlapping_words_keep_their_times():
    w = words_of(("one", 0.0, 1.0), ("two", 0.5, 1.5), ("three", 1.4, 2.0))
    t = Transcript((seg(1, 0.0, 2.0, "one two three", w),))
    out = attribute_speakers(t, turns((0.0, 0.9, "A"), (0.9, 3.0, "B")))
    assert [(s.speaker, s.text, s.start, s.end) for s in out.segments] == [
        ("A", "one", 0.0, 1.0),
        ("B", "two three", 0.5, 2.0),
    ]
    s = segment_from_asr(
        start_ms=200,
        end_ms=900,
        text="a b",
        pieces=[f"{S}a", f"{S}b"],
        token_times_ms=[[100, 800], [500, 1200]],
    )
    assert (s.start, s.end) == (0.1, 1.2) and [(x.start, x.end) for x in s.words] == [(0.1, 0.8), (0.5, 1.2)]


# --- renaming ---------------------------------------------------------------------------------------


def test_rename_speaker_everywhere_and_merge():
    t = attribute_speakers(
        Transcript((seg(1, 0.0, 2.0, "a b", words_of(("a", 0.0, 0.5), ("b", 1.5, 2.0))),)),
        turns((0.0, 1.0, "SPEAKER_00"), (1.0, 2.0, "SPEAKER_01")),
    )
    r = rename_speaker(t, "SPEAKER_00", "  Ann \n Lee ")
    assert [s.speaker for s in r.segments] == ["Ann Lee", "SPEAKER_01"]
    assert [w.speaker for s in r.segments for w in s.words] == ["Ann Lee", "SPEAKER_01"]
    assert [s.text for s in r.segments] == [s.text for s in t.segments]
    merged = rename_speaker(r, "SPEAKER_01", "Ann Lee")
    assert merged.speakers == ["Ann Lee"]
    with pytest.raises(LookupError, match="SPEAKER_09"):
        rename_speaker(t, "SPEAKER_09", "Bob")
    with pytest.raises(ValueError, match="blank"):
        rename_speaker(t, "SPEAKER_00", " \t")
