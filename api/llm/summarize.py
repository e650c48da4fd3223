"""Summaries and titles from a speaker-attributed transcript: prompt assembly, map-reduce for
transcripts longer than the models' context (never truncated), ``<think>`` stripping, structured
output parsing with one repair retry, and the localized "not mentioned" for empty sections."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from api.llm import prompts
from api.llm.client import LLM, Usage
from speechlib.transcript import Segment

PLACEHOLDER = re.compile(r"\{([^\W\d]\w*)\}")
"""Template placeholders: ``{name}`` (a letter or _, then letters, digits, _; Unicode letters too)."""

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_HEADING = re.compile(r"^(#{1,6})\s+\S")
TOKEN_MARGIN = 16  # per prompt, for the chat format's own tokens around each message


class MalformedOutput(Exception):
    """The model's answer was not the required JSON, also after one repair retry."""


def mmss(seconds: float) -> str:
    total = max(0, int(seconds))
    return f"{total // 60:02d}:{total % 60:02d}"


def transcript_lines(segments: Sequence[Segment]) -> list[str]:
    """One line per segment: ``[mm:ss] SPEAKER: text`` (minutes keep counting past 59)."""
    lines = []
    for seg in segments:
        text = seg.text.strip()
        if text:
            lines.append(f"[{mmss(seg.start)}] {seg.speaker or 'SPEAKER'}: {text}")
    return lines


def text_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def strip_think(text: str) -> str:
    """Remove reasoning blocks (``<think>…</think>``, or an unclosed one to the end)."""
    return _THINK.sub("", text).strip()


def not_mentioned(language: str | None, lines: Sequence[str] = ()) -> str:
    if language in prompts.NOT_MENTIONED:
        return prompts.NOT_MENTIONED[language]
    sample = "".join(lines[:50])
    cjk = sum(1 for ch in sample if "\u4e00" <= ch <= "\u9fff")
    return prompts.NOT_MENTIONED["zh" if cjk > len(sample) / 10 else "en"]


# ----------------------------------------------------------------------------- structured output
class ActionItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    task: str = Field(validation_alias=AliasChoices("task", "item", "action", "description"))
    owner: str | None = Field(None, validation_alias=AliasChoices("owner", "assignee", "responsible"))
    due: str | None = Field(None, validation_alias=AliasChoices("due", "due_date", "deadline"))

    @field_validator("owner", "due", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and v.strip().lower() in {"", "null", "none", "n/a"}):
            return None
        return str(v)


class SummaryOut(BaseModel):
    model_config = ConfigDict(extra="ignore")
    summary: str = Field(min_length=1)
    key_points: list[str] = Field(default_factory=list)
    action_items: list[ActionItem] = Field(default_factory=list)
    decisions: list[str] = Field(default_factory=list)

    @field_validator("key_points", "decisions", mode="before")
    @classmethod
    def _strings(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in v]
        return v


def parse_summary(raw: str) -> SummaryOut:
    """The model's answer as :class:`SummaryOut`; ValueError saying what is wrong."""
    text = strip_think(raw)
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object found")
    try:
        # strict=False: a raw newline or tab inside a string (models write Markdown that way; a
        # llama.cpp grammar lets it through) is taken as the character it is
        data = json.loads(text[start : end + 1], strict=False)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg} at position {e.pos})") from None
    if not isinstance(data, dict):
        raise ValueError("the JSON is not an object")
    try:
        return SummaryOut.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"field {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def fill_empty(markdown: str, placeholder_text: str) -> str:
    """Leftover ``{placeholders}`` and headings with nothing under them get ``placeholder_text``."""
    markdown = PLACEHOLDER.sub(placeholder_text, markdown)
    lines = markdown.strip().splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        out.append(line)
        m = _HEADING.match(line)
        if not m:
            continue
        level = len(m.group(1))
        rest = [x for x in lines[i + 1 :] if x.strip()]
        nxt = _HEADING.match(rest[0]) if rest else None
        if not rest or (nxt and len(nxt.group(1)) <= level):
            out += ["", placeholder_text]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- the calls
@dataclass
class SummaryResult:
    summary: str
    key_points: list[str]
    action_items: list[dict[str, Any]]
    decisions: list[str]
    language: str | None
    model: str
    provider: str
    usage: Usage
    map_calls: int = 0
    prompts: list[list[dict[str, str]]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "key_points": self.key_points,
            "action_items": self.action_items,
            "decisions": self.decisions,
        }


class Summarizer:
    """Summaries and titles with one :class:`LLM`. ``check`` is called before every model call (a
    job passes ``ctx.check`` so a cancel stops between calls)."""

    def __init__(self, llm: LLM, check: Callable[[], None] | None = None):
        self.llm = llm
        self.check = check or (lambda: None)
        self.usage = Usage()
        self.last_model = ""
        self.last_provider = ""
        self.map_calls = 0

    def _call(
        self, messages: list[dict[str, str]], max_tokens: int | None = None, structured: bool = False
    ) -> str:
        self.check()
        reply = self.llm.complete(messages, max_tokens=max_tokens, structured=structured)
        self.usage.add(reply.usage)
        self.last_model, self.last_provider = reply.model, reply.provider
        return strip_think(reply.text)

    def _tokens(self, text: str) -> int:
        return self.llm.count_tokens(text) + TOKEN_MARGIN

    def _split_line(self, line: str, budget: int) -> list[str]:
        """A single line over the budget, cut into consecutive pieces that fit (nothing dropped)."""
        if self._tokens(line) <= budget or len(line) < 2:
            return [line]
        mid = len(line) // 2
        return self._split_line(line[:mid], budget) + self._split_line(line[mid:], budget)

    def _pack(self, items: list[str], budget: int, sep: str = "\n") -> list[list[str]]:
        """Consecutive groups of ``items`` whose joined token count fits ``budget``."""
        groups: list[list[str]] = []
        current: list[str] = []
        for item in items:
            for piece in self._split_line(item, budget):
                if current and self._tokens(sep.join([*current, piece])) > budget:
                    groups.append(current)
                    current = []
                current.append(piece)
        if current:
            groups.append(current)
        return groups

    def _fits(self, system: str, user: str) -> bool:
        return self._tokens(system) + self._tokens(user) <= self.llm.prompt_budget

    def notes(self, lines: list[str], language: str | None) -> list[str]:
        """Map: notes per part of a transcript too long for one call (each prompt fits)."""
        system = prompts.map_system(language)
        budget = self.llm.prompt_budget - self._tokens(system) - self._tokens("Transcript:\n")
        notes = []
        for part in self._pack(lines, budget):
            notes.append(
                self._call(
                    [
                        {"role": "system", "content": system},
                        {"role": "user", "content": prompts.transcript_message(part)},
                    ]
                )
            )
            self.map_calls += 1
        return notes

    def condensed(self, notes: list[str], final_system: str, language: str | None) -> list[str]:
        """Reduce: merge notes in groups until they fit next to ``final_system``."""
        system = prompts.merge_system(language)
        while not self._fits(final_system, prompts.notes_message(notes)) and len(notes) > 1:
            budget = self.llm.prompt_budget - self._tokens(system) - 64
            groups = self._pack(notes, budget, sep="\n\n")
            if len(groups) >= len(notes):  # each note alone fills a prompt: pair them up anyway
                groups = [notes[i : i + 2] for i in range(0, len(notes), 2)]
            notes = [
                self._call(
                    [
                        {"role": "system", "content": system},
                        {"role": "user", "content": prompts.notes_message(g)},
                    ]
                )
                for g in groups
            ]
        return notes

    def summarize(self, lines: list[str], *, language: str | None, template: str) -> SummaryResult:
        self.llm.require()
        empty = not_mentioned(language, lines)
        system = prompts.summary_system(language, template, empty, prompts.SOURCE_TRANSCRIPT)
        user = prompts.transcript_message(lines)
        if not self._fits(system, user):
            notes = self.condensed(self.notes(lines, language), system, language)
            system = prompts.summary_system(language, template, empty, prompts.SOURCE_NOTES)
            user = prompts.notes_message(notes)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        answer = self._call(messages, structured=True)
        try:
            parsed = parse_summary(answer)
        except ValueError as e:
            repair = [
                *messages,
                {"role": "assistant", "content": answer},
                {"role": "user", "content": prompts.repair_message(str(e))},
            ]
            answer = self._call(repair, structured=True)
            try:
                parsed = parse_summary(answer)
            except ValueError as e2:
                raise MalformedOutput(f"the model's answer was not the required JSON twice: {e2}") from None
        return SummaryResult(
            summary=fill_empty(parsed.summary, empty),
            key_points=[p for p in parsed.key_points if p.strip()],
            action_items=[a.model_dump() for a in parsed.action_items if a.task.strip()],
            decisions=[d for d in parsed.decisions if d.strip()],
            language=language,
            model=self.last_model,
            provider=self.last_provider,
            usage=self.usage,
            map_calls=self.map_calls,
        )

    def title(self, lines: list[str], *, language: str | None, summary: str | None = None) -> str:
        self.llm.require()
        system = prompts.title_system(language)
        if summary and summary.strip():
            source = text_lines(summary)
        else:
            source = lines
        user = "\n".join(source)
        if not self._fits(system, user):
            notes = self.condensed(self.notes(source, language), system, language)
            user = prompts.notes_message(notes)
        title = self._call(
            [{"role": "system", "content": system}, {"role": "user", "content": user}], max_tokens=64
        )
        first = next((x.strip() for x in title.splitlines() if x.strip()), "")
        return first.strip("\"'“”「」#* ").rstrip("。.")[:200]
