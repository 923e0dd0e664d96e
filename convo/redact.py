"""Find sensitive data in text and hide it before a request leaves the process.

>>> from convo.redact import Redactor, restore
>>> r = Redactor(mode="placeholder").redact("Mail ann@example.com or call +1 415 555 2671.")
>>> r.text
'Mail [EMAIL_1] or call [PHONE_1].'
>>> restore("I wrote to [EMAIL_1].", r.mapping)
'I wrote to ann@example.com.'

Built-in kinds (``Redactor(kinds=...)`` picks some; names are case-insensitive):

- ``CARD``: 13-19 digits with a card network's prefix and length (Visa 4 with 13/16/19
  digits, Amex 34/37 with 15, Mastercard, Maestro, Discover, UnionPay, JCB, Diners, Mir), a valid
  Luhn check digit, unbroken or grouped as cards are printed (fours, Amex 4-6-5, Diners 4-6-4).
- ``SSN``: US social security numbers written ``123-45-6789`` or ``123 45 6789``, or nine bare
  digits right after "SSN" / "social security number". Area 000, 666 and 900-999, group 00 and
  serial 0000 are never issued, so they are not SSNs.
- ``EMAIL``: ``local@domain.tld`` (ASCII).
- ``PHONE``: international ``+CC ...`` (8-15 digits, E.164), US ``(415) 555-2671``,
  ``415-555-2671``, ``415.555.2671``, ``415 555 2671`` (valid area and exchange codes), and
  Chinese mobiles ``1[3-9]`` + 9 digits with optional ``+86`` / ``0086``.
- ``CN_ID``: Chinese resident ID numbers, 18 characters, with a known province code, a real
  birth date between 1900 and today, and a valid GB 11643 check character.
- ``IP``: IPv4 and IPv6 addresses that the ``ipaddress`` module accepts. IPv6 forms with a single
  group (``::1``, ``::2``) are skipped: in text they are mostly code (``a[::2]``).
- ``API_KEY``: Anthropic ``sk-ant-...``, OpenAI ``sk-...`` / ``sk-proj-...``, AWS access key
  ids ``AKIA``/``ASIA`` + 16, GitHub ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``/``github_pat_``
  tokens, and the token after ``Bearer``. Random-looking tokens must contain a digit.

Numbers that fail their checksum or date rule are left alone; an unbroken 18-digit number that
starts with a Chinese province code is judged as a resident ID, never as a card. Of overlapping
findings, the one that starts first wins, then the longer one.
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._detectors import (
    BUILTIN,
    KINDS,
    Check,
    ascii_table,
    whole,
)
from ._exceptions import InvalidConfigError, InvalidInputError
from ._redact_slots import collect_content, collect_params

__all__ = ["Finding", "RedactingCounter", "Redaction", "Redactor", "Restorer", "pseudonym", "restore", "restore_message"]

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_[0-9]+\]")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Finding:
    """One sensitive value: its kind and its span in the original text."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class Redaction:
    """The redacted ``text``, the ``mapping`` placeholder -> original (empty in mask mode) and the
    ``findings``, with offsets into the original text."""

    text: str
    mapping: dict[str, str]
    findings: tuple[Finding, ...] = field(default=())


class _Numbering:
    """Placeholders for one mapping: the same value always gets the same placeholder, and a
    placeholder-shaped string already in the input is never reused for another value."""

    def __init__(self, mapping: Mapping[str, str] | None, reserved: set[str]) -> None:
        self.mapping = dict(mapping or {})
        self.by_value = {v: k for k, v in self.mapping.items()}
        self.reserved = reserved - self.mapping.keys()
        self.next: dict[str, int] = {}
        for key in self.mapping:
            kind, _, n = key[1:-1].rpartition("_")
            if n.isdigit():
                self.next[kind] = max(self.next.get(kind, 1), int(n) + 1)

    def placeholder(self, kind: str, value: str) -> str:
        known = self.by_value.get(value)
        if known is not None:
            return known
        n = self.next.get(kind, 1)
        while f"[{kind}_{n}]" in self.reserved:
            n += 1
        key = f"[{kind}_{n}]"
        self.next[kind] = n + 1
        self.mapping[key] = value
        self.by_value[value] = key
        return key


class Redactor:
    """Hides sensitive values: ``mode="mask"`` writes ``[EMAIL]``, ``mode="placeholder"``
    writes ``[EMAIL_1]`` and returns a mapping so :func:`restore` can put the values back.

    ``kinds`` picks built-in kinds (default: all); ``custom`` adds ``{name: regex}`` kinds,
    written ``[NAME]`` / ``[NAME_1]``; they win ties against built-in kinds.
    """

    def __init__(
        self,
        kinds: Iterable[str] | None = None,
        mode: str = "mask",
        custom: Mapping[str, str | re.Pattern[str]] | None = None,
    ) -> None:
        if mode not in ("mask", "placeholder"):
            raise InvalidConfigError(f"mode must be 'mask' or 'placeholder', got {mode!r}")
        if isinstance(kinds, str):
            kinds = (kinds,)
        chosen = KINDS if kinds is None else tuple(dict.fromkeys(str(k).upper() for k in kinds))
        unknown = [k for k in chosen if k not in BUILTIN]
        if unknown:
            raise InvalidConfigError(f"unknown kinds {unknown}; built-in kinds are {list(KINDS)} (add others with custom=)")
        self.mode = mode
        self.kinds = tuple(k for k in KINDS if k in chosen)
        self._detectors = [_custom(name, pattern) for name, pattern in (custom or {}).items()]
        self._detectors += [(k, *detector) for k in self.kinds for detector in BUILTIN[k]]

    def __repr__(self) -> str:
        return f"Redactor(kinds={list(self.kinds)}, mode={self.mode!r})"

    def scan(self, text: str) -> list[Finding]:
        """The sensitive values in ``text``, in order, without overlaps.

        Other scripts' digits and spaces are read as ASCII ones (full-width ``４１１１``, a
        no-break space), offsets unchanged. When a finding overlaps one that starts earlier, the
        part after it is searched again by the same detector: in ``4111 1111 1111 1111xann@...``
        the card does not swallow the e-mail, nor the e-mail the card's last group.
        """
        if not text.isascii():
            text = text.translate(ascii_table())
        candidates: list[tuple[int, int, int, str]] = []
        for rank, (kind, pattern, check, needs) in enumerate(self._detectors):
            if needs and needs not in text:
                continue
            candidates.extend(self._candidates(text, rank, 0))
        heapq.heapify(candidates)
        findings: list[Finding] = []
        end = 0
        while candidates:
            start, neg_end, rank, kind = heapq.heappop(candidates)
            if start >= end:
                findings.append(Finding(kind, start, -neg_end))
                end = -neg_end
            elif -neg_end > end:  # overlaps the finding before it: what is left may still be one
                for c in self._candidates(text[end:-neg_end], rank, end):
                    heapq.heappush(candidates, c)
        return findings

    def _candidates(self, text: str, rank: int, offset: int) -> list[tuple[int, int, int, str]]:
        """One detector's findings in ``text`` (offsets shifted by ``offset``). A check may cut a
        match short (an address ends where its TLD does): the text after the cut is searched again."""
        kind, pattern, check, _ = self._detectors[rank]
        out = []
        start: int | None = 0
        while start is not None:
            segment, base, start = text[start:] if start else text, start, None
            for m in pattern.finditer(segment):
                span = check(m)
                if span is not None and span[1] > span[0]:
                    out.append((span[0] + base + offset, -(span[1] + base + offset), rank, kind))
                    if span[1] < m.end():
                        start = base + span[1]
                        break
        return out

    def redact(self, text: str, mapping: Mapping[str, str] | None = None) -> Redaction:
        """Redact one text. In placeholder mode, ``mapping`` (from an earlier redaction) is
        extended rather than started afresh; the result holds the whole, extended mapping."""
        if not isinstance(text, str):
            raise InvalidInputError(f"redact() takes a str, got {type(text).__name__}; use redact_request for a request")
        numbering = _Numbering(mapping, set(PLACEHOLDER.findall(text)))
        out, findings = self._apply(text, numbering)
        return Redaction(out, numbering.mapping if self.mode == "placeholder" else {}, tuple(findings))

    def _apply(self, text: str, numbering: _Numbering) -> tuple[str, list[Finding]]:
        findings = self.scan(text)
        parts: list[str] = []
        last = 0
        for f in findings:
            value = text[f.start : f.end]
            parts += [text[last : f.start], numbering.placeholder(f.kind, value) if self.mode == "placeholder" else f"[{f.kind}]"]
            last = f.end
        parts.append(text[last:])
        return "".join(parts), findings

    def redact_request(
        self, request: dict[str, Any], mapping: Mapping[str, str] | None = None, *, thinking: bool = False
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A redacted deep copy of a Messages API request, and the mapping (empty in mask mode).

        Redacts every field that can carry user text: the system prompt, text blocks (and their
        citations' cited text), documents (text, title, context), search results, ``tool_result``
        content, ``tool_use`` inputs (keys and values), ``stop_sequences``, tool descriptions and
        the descriptions, titles, defaults, examples and enums of their input schemas. A
        sensitive ``metadata.user_id`` becomes an opaque id (a hash: the API wants one per user).

        Thinking blocks are signed, so they are never re-detected. With ``thinking=True`` (a
        history whose thinking was restored with the same, stable ``mapping``, as a Conversation
        keeps it) the mapping's values in them are put back to their placeholders, which gives
        the signed text back; otherwise they are left as they are. The input is never changed.
        """
        if not isinstance(request, dict):
            raise InvalidInputError(f"redact_request takes a request dict, got {type(request).__name__}")
        copied = copy.deepcopy(request)
        slots: list[tuple[Any, Any]] = []
        keyed: list[dict[str, Any]] = []  # tool inputs whose keys may hold text too
        thoughts: list[dict[str, Any]] = []
        if "system" in copied:
            collect_content(copied, "system", slots, keyed, thoughts)
        for message in copied.get("messages") or ():
            if isinstance(message, dict) and "content" in message:
                collect_content(message, "content", slots, keyed, thoughts)
        collect_params(copied, slots)
        reserved = {p for container, key in slots for p in PLACEHOLDER.findall(container[key])}
        reserved.update(p for d in keyed for k in d if isinstance(k, str) for p in PLACEHOLDER.findall(k))
        # A placeholder in a signed thinking block keeps its meaning: never given to another value.
        reserved.update(p for block in thoughts for p in PLACEHOLDER.findall(block["thinking"]))
        numbering = _Numbering(mapping, reserved)
        for container, key in slots:
            container[key] = self._apply(container[key], numbering)[0]
        for d in keyed:
            renamed = {self._apply(k, numbering)[0] if isinstance(k, str) else k: v for k, v in d.items()}
            if len(renamed) == len(d) and list(renamed) != list(d):
                d.clear()
                d.update(renamed)
        if thinking and numbering.mapping:
            unrestore = _unrestorer(numbering.mapping)
            for block in thoughts:
                block["thinking"] = unrestore(block["thinking"])
        metadata = copied.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and self.scan(metadata["user_id"]):
            metadata["user_id"] = pseudonym(metadata["user_id"])
        return copied, numbering.mapping if self.mode == "placeholder" else {}

    def restorer(self, mapping: Mapping[str, str]) -> Restorer:
        """A :class:`Restorer` for streamed text redacted with ``mapping``."""
        return Restorer(mapping)


def _custom(name: str, pattern: str | re.Pattern[str]) -> tuple[str, re.Pattern[str], Check, str]:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidConfigError(f"custom kind names are letters, digits and _ starting with a letter, got {name!r}")
    if name.upper() in KINDS:
        raise InvalidConfigError(f"custom kind {name!r} clashes with a built-in kind; pick another name")
    try:
        compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise InvalidConfigError(f"custom pattern {name!r} is not a valid regular expression: {exc}") from None
    return name.upper(), compiled, whole, ""


def pseudonym(user_id: str) -> str:
    """An opaque, stable id for a user id that holds sensitive data (the same user, the same id)."""
    return "user-" + hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _unrestorer(mapping: Mapping[str, str]) -> Callable[[str], str]:
    """A function that puts ``mapping``'s values back to their placeholders (longest first)."""
    by_value = {v: k for k, v in mapping.items() if v}
    pattern = re.compile("|".join(re.escape(v) for v in sorted(by_value, key=len, reverse=True)))
    return lambda text: pattern.sub(lambda m: by_value[m.group()], text) if by_value else text


def restore(text: str, mapping: Mapping[str, str]) -> str:
    """Put the original values back in place of the placeholders of ``mapping``; other
    bracketed text is left as it is."""
    if not mapping or "[" not in text:
        return text
    return PLACEHOLDER.sub(lambda m: mapping.get(m.group(), m.group()), text)


class Restorer:
    """Restores placeholders in streamed text, even one split across deltas.

    ``feed(delta)`` returns what can be shown now; it holds back only a tail that could still
    become a placeholder of the mapping (from its ``[``). ``flush()`` returns the rest at the
    end. Joined, the pieces equal ``restore`` of the whole text.
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)
        self._prefixes = {key[:i] for key in self.mapping for i in range(1, len(key))}
        self._held = ""

    def feed(self, delta: str) -> str:
        """The part of the text so far that can be shown now, placeholders restored; a tail that may
        still grow into a placeholder is held back for the next call.
        """
        text = self._held + delta
        cut = text.rfind("[")
        if cut >= 0 and text[cut:] in self._prefixes:
            self._held = text[cut:]
            return restore(text[:cut], self.mapping)
        self._held = ""
        return restore(text, self.mapping)

    def flush(self) -> str:
        """The text still held back, restored; call it once when the stream has ended."""
        text, self._held = self._held, ""
        return restore(text, self.mapping)


def restore_message(message: Any, mapping: Mapping[str, str], *, thinking: bool = False) -> Any:
    """A response (``anthropic.types.Message`` or its dict) with placeholders restored in its
    text blocks and in the keys and string values of its tool calls; returns the same type.

    ``thinking=True`` restores thinking blocks too: only for a history kept with one stable
    mapping, whose requests are redacted with ``redact_request(..., thinking=True)`` (which puts
    the signed text back)."""
    data = message if isinstance(message, dict) else message.model_dump(mode="json")
    data = copy.deepcopy(data)
    slots: list[tuple[Any, Any]] = []
    keyed: list[dict[str, Any]] = []
    thoughts: list[dict[str, Any]] = []
    collect_content(data, "content", slots, keyed, thoughts)
    for container, key in slots:
        container[key] = restore(container[key], mapping)
    for d in keyed:
        renamed = {restore(k, mapping) if isinstance(k, str) else k: v for k, v in d.items()}
        if len(renamed) == len(d) and list(renamed) != list(d):
            d.clear()
            d.update(renamed)
    if thinking:
        for block in thoughts:
            block["thinking"] = restore(block["thinking"], mapping)
    return data if isinstance(message, dict) else type(message).model_validate(data)


class RedactingCounter:
    """A token counter that counts what will be sent: the text redacted first. A
    :class:`~convo.Conversation` with a ``redactor`` wraps its counter in one, so a counter that
    calls the API (:class:`~convo.ExactCounter`) never sends raw values to ``count_tokens``.

    Counts use a throwaway mapping: a placeholder's tokens do not depend on its number's history.
    """

    def __init__(self, inner: Any, redactor: Redactor) -> None:
        self.inner = inner
        self.redactor = redactor

    def __repr__(self) -> str:
        return f"RedactingCounter({self.inner!r}, {self.redactor!r})"

    @property
    def calibration(self) -> Any:
        """The wrapped counter's calibration, if it has one."""
        return getattr(self.inner, "calibration", None)

    def _request(self, **fields: Any) -> dict[str, Any]:
        return self.redactor.redact_request({k: v for k, v in fields.items() if v is not None})[0]

    def _messages(self, messages: Iterable[Any]) -> list[Any]:
        from .messages import to_message

        api = [m.to_api() if hasattr(m, "to_api") else m for m in messages]
        return [to_message(m) for m in self._request(messages=api)["messages"]]

    def _system(self, system: Any) -> Any:
        if system is None or isinstance(system, str):
            return self._request(system=system).get("system") if system else system
        from .messages import to_system

        blocks = [b.model_dump(mode="json") if hasattr(b, "model_dump") else b for b in system]
        return to_system(self._request(system=blocks)["system"])

    def _tools(self, tools: Any) -> Any:
        return self._request(tools=list(tools))["tools"] if tools else tools

    def count_text(self, text: str) -> int:
        return int(self.inner.count_text(self.redactor.redact(text).text))

    def count_message(self, message: Any) -> int:
        return int(self.inner.count_message(self._messages([message])[0]))

    def fixed_tokens(self, system: Any = None, tools: Any = None) -> int:
        from .tokens import fixed_tokens

        return fixed_tokens(self.inner, self._system(system), self._tools(tools))

    def count_request(self, messages: Any, *, system: Any = None, tools: Any = None, model: str | None = None) -> int:
        kwargs: dict[str, Any] = {"system": self._system(system), "tools": self._tools(tools)}
        if model is not None:
            kwargs["model"] = model
        return int(self.inner.count_request(self._messages(messages), **kwargs))
