"""Every prompt the summaries and titles send (one place to read and change them; docs/summaries.md).

Prompts are assembled with plain concatenation (templates and transcripts contain braces)."""

from __future__ import annotations

LANGUAGE_NAMES = {
    "zh": "Simplified Chinese (简体中文)",
    "yue": "Cantonese written in Traditional Chinese (粵語)",
    "en": "English",
    "ja": "Japanese (日本語)",
    "ko": "Korean (한국어)",
}

# What an empty section or placeholder says, in the output language.
NOT_MENTIONED = {
    "zh": "未提及",
    "yue": "未有提及",
    "en": "Not mentioned",
    "ja": "言及なし",
    "ko": "언급 없음",
}

LINE_FORMAT = "[mm:ss] SPEAKER: text"


# The summary answer's shape, for servers that constrain decoding to a JSON schema (llama.cpp's
# ``response_format: {"type": "json_object", "schema": ...}``; a model entry's ``json_schema: true``).
# Lengths are bounded so that a complete object fits ``max_output_tokens`` (a small model asked for
# JSON otherwise rambles until the token limit cuts the object off): at most 3 items per list and
# string lengths in proportion: about 100 tokens for the JSON structure, then 2 characters per token.
def summary_json_schema(max_output_tokens: int) -> dict:
    chars = max(200, 2 * (max_output_tokens - 100))

    def text(share: float) -> dict:
        return {"type": "string", "maxLength": max(8, int(chars * share))}

    def items(schema: dict) -> dict:
        return {"type": "array", "items": schema, "maxItems": 3}

    action = {
        "type": "object",
        "properties": {"task": text(0.06), "owner": text(0.015), "due": text(0.015)},
        "required": ["task", "owner", "due"],
    }
    return {
        "type": "object",
        "properties": {
            "summary": text(0.3),
            "key_points": items(text(0.07)),
            "action_items": items(action),
            "decisions": items(text(0.07)),
        },
        "required": ["summary", "key_points", "action_items", "decisions"],
    }


def language_directive(language: str | None) -> str:
    """The sentence that fixes the output language (None/"auto": the transcript's own)."""
    if language in LANGUAGE_NAMES:
        return f"Write every part of your answer in {LANGUAGE_NAMES[language]}."
    return "Write every part of your answer in the language the transcript is spoken in."


def summary_system(language: str | None, template: str, not_mentioned: str, source: str) -> str:
    """The final (or only) summary call. ``source``: what the user message holds."""
    return (
        "You write meeting minutes. "
        + source
        + " Use only what it says: never invent names, dates, numbers or decisions. "
        + language_directive(language)
        + "\n\nAnswer with ONE JSON object and nothing else, in this shape:\n"
        '{"summary": "<the Markdown outline below, filled in>", '
        '"key_points": ["<point>", ...], '
        '"action_items": [{"task": "<what>", "owner": "<who, or null>", "due": "<when, as stated, or null>"}, ...], '
        '"decisions": ["<decision>", ...]}\n\n'
        "The summary must follow this Markdown outline: keep its headings, write under each heading "
        "what the transcript says about it (cite speakers and [mm:ss] times where useful), and replace "
        "every {placeholder} with its value. Where the transcript says nothing for a section or a "
        'placeholder, write exactly "' + not_mentioned + '".\n'
        "<outline>\n" + template.strip() + "\n</outline>"
    )


SOURCE_TRANSCRIPT = (
    "The user message is a meeting transcript, one line per utterance: " + LINE_FORMAT + " (time from "
    "the start of the recording)."
)
SOURCE_NOTES = (
    "The user message holds notes taken on consecutive parts of one meeting, in order (each cites "
    "speakers and [mm:ss] times)."
)


def transcript_message(lines: list[str]) -> str:
    return "Transcript:\n" + "\n".join(lines)


def notes_message(notes: list[str]) -> str:
    return "\n\n".join(f"--- part {i} of {len(notes)} ---\n{n.strip()}" for i, n in enumerate(notes, 1))


def map_system(language: str | None) -> str:
    """A part of a transcript too long for one call: notes to be combined later."""
    return (
        "You take notes on one part of a longer meeting transcript (lines: " + LINE_FORMAT + "). "
        "Write concise notes of this part only: the points made (with speaker and [mm:ss] time), "
        "decisions, and action items with owner and due date when stated. Use only what the part "
        "says. Plain text, no preamble. " + language_directive(language)
    )


def merge_system(language: str | None) -> str:
    """Notes too long for the final call: condensed in groups first."""
    return (
        "You condense notes taken on consecutive parts of one meeting into one set of notes. Keep "
        "every decision and action item (owner, due date), speakers and [mm:ss] times; drop "
        "repetition. Plain text, no preamble. " + language_directive(language)
    )


def repair_message(error: str) -> str:
    return (
        "Your answer could not be used: " + error + ". Answer again with only the JSON object in "
        "the required shape (summary, key_points, action_items, decisions), no other text."
    )


def title_system(language: str | None) -> str:
    return (
        "You write the title of a meeting from its transcript or summary: at most 12 words, no "
        "quotes, no trailing punctuation. Answer with the title only. " + language_directive(language)
    )
