"""Saving and loading conversations: versioned JSON, written atomically.

The file is ``{"format": "convo.conversation", "version": 1, ...}``; a write goes to a temp
file in the same folder (mode 0600), is fsynced, then renamed over the old file, so a crash
leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exceptions import (
    ConversationFileError,
    InvalidConfigError,
    InvalidInputError,
    InvalidMessageError,
)
from ._files import write_private
from ._written import written_messages, written_system, written_text
from .messages import to_message
from .redact import PLACEHOLDER
from .strategies import Strategy, StrategyLike, as_strategy, strategy_from_config, unsavable
from .summarize import Summary
from .tokens import TokenCounter

if TYPE_CHECKING:
    from .conversation import Conversation

__all__ = ["FILE_FORMAT", "FILE_VERSION", "from_dict", "head", "load", "save", "saved_strategy", "to_dict", "write_atomic"]

FILE_FORMAT = "convo.conversation"
FILE_VERSION = 1


def to_dict(conv: Conversation, *, strategy: bool = True) -> dict[str, Any]:
    """The saved form: versioned, JSON-able, no secrets.

    The strategy's config is checked by rebuilding it, so a strategy that could not be loaded
    raises ConversationFileError now; ``strategy=False`` marks it as not saved instead. With a
    redactor, the text is written as the API saw it (see ``convo._written``).
    """
    summary = conv.summary
    return {
        **head(conv, strategy=strategy),
        "messages": written_messages(conv, [m.to_api() for m in conv.messages]),
        "pinned": conv.pinned,
        **({"summary": {"text": written_text(conv, summary.text), "turns": summary.turns}} if summary else {}),
    }


def head(conv: Conversation, *, strategy: bool = True) -> dict[str, Any]:
    """The saved form without the messages, pins and summary (a store's header)."""
    system = conv.system
    return {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "model": conv.model,
        "budget": conv.budget,
        "max_tokens": conv.max_tokens,
        "system": written_system(
            conv, system if system is None or isinstance(system, str) else [b.model_dump(mode="json") for b in system]
        ),
        "strategy": saved_strategy(conv.strategy) if strategy else {"type": "custom"},
        "prompt_cache": conv.prompt_cache,
        # The tool loop's settings; the tools themselves are code: pass tools= again to load().
        "max_steps": conv.max_steps,
        "keep_refusals": conv.keep_refusals,
    }


def saved_strategy(strategy: StrategyLike) -> dict[str, Any]:
    """The strategy's config, checked: ConversationFileError if it could not be rebuilt from it."""
    config = as_strategy(strategy).config()
    try:
        json.dumps(config)
        strategy_from_config(config)
    except (InvalidConfigError, KeyError, TypeError, ValueError) as exc:
        raise unsavable(strategy, f"its config does not rebuild it: {exc}") from None
    return config


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` via a 0600 temp file, fsync and rename."""
    path = Path(path)
    try:
        write_private(path, text)
    except OSError as exc:
        raise ConversationFileError(f"cannot write {path}: {exc.strerror}; check the folder exists") from None


def save(conv: Conversation, path: str | os.PathLike[str], *, strategy: bool = True) -> None:
    """Write :func:`to_dict` to ``path`` atomically (nothing is written if the strategy is refused)."""
    if Path(path).is_dir():
        raise ConversationFileError(f"cannot save to {path}: it is a directory; give a file path such as {Path(path) / 'chat.json'}")
    try:
        text = json.dumps(to_dict(conv, strategy=strategy), ensure_ascii=False, indent=1, allow_nan=False)
        text.encode("utf-8")
    except (TypeError, ValueError) as exc:  # a value that is not JSON, a lone surrogate
        raise ConversationFileError(f"cannot save the conversation as JSON: {exc}") from None
    write_atomic(path, text)


def from_dict(
    cls: type[Conversation],
    data: Mapping[str, Any],
    *,
    strategy: StrategyLike | None = None,
    counter: TokenCounter | None = None,
    client: Any = None,
    tools: Any = None,
    counts: Sequence[int] | None = None,
) -> Conversation:
    """Rebuild a conversation from :func:`to_dict`'s output; ConversationFileError if it is bad.
    ``tools`` are the conversation's tools (code is not saved); ``counts``: the messages' token
    counts by ``counter``, when known (a store keeps them), -1 for one to count."""
    if not isinstance(data, Mapping) or data.get("format") != FILE_FORMAT:
        raise ConversationFileError(
            "not a convo conversation (no \"format\": \"convo.conversation\" key); "
            "load files written by Conversation.save"
        )
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FILE_VERSION:
        raise ConversationFileError(
            f"conversation file version {version!r} is not supported (this convo reads up to "
            f"{FILE_VERSION}); upgrade convo"
        )
    try:
        conv = cls(
            data.get("system"),
            model=data["model"],
            budget=data["budget"],
            max_tokens=data.get("max_tokens"),
            strategy=strategy if strategy is not None else _load_strategy(data.get("strategy")),
            counter=counter,
            client=client,
            prompt_cache=data.get("prompt_cache"),
            tools=tools,
            max_steps=data.get("max_steps", 10),
            keep_refusals=data.get("keep_refusals", False),
        )
        messages = data["messages"]
        if not isinstance(messages, list):
            raise InvalidMessageError("'messages' must be a list")
        normalized = []
        for i, m in enumerate(messages):
            try:
                normalized.append(to_message(m))
            except InvalidMessageError as exc:
                raise InvalidMessageError(f"message {i}: {exc}") from None
        conv._restore(normalized, counts)
        for i in set(data.get("pinned", [])):
            conv.pin(i)
        conv._summary = _load_summary(data.get("summary"), len(conv._starts))
        conv._mapping = _load_mapping(data.get("redaction"))
    except KeyError as exc:
        raise ConversationFileError(f"conversation file is missing the {exc.args[0]!r} field") from None
    except (InvalidConfigError, InvalidMessageError, InvalidInputError, TypeError, AttributeError, ValueError) as exc:
        raise ConversationFileError(f"conversation file is invalid: {exc}") from None
    except RecursionError:
        raise ConversationFileError("conversation file is invalid: it is nested too deeply") from None
    return conv


def load(
    cls: type[Conversation],
    path: str | os.PathLike[str],
    *,
    strategy: StrategyLike | None = None,
    counter: TokenCounter | None = None,
    client: Any = None,
    tools: Any = None,
) -> Conversation:
    """Read a file written by :func:`save`; ConversationFileError (naming the file) if it cannot."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConversationFileError(f"{path} does not exist") from None
    except UnicodeDecodeError:
        raise ConversationFileError(f"{path} is not UTF-8 text; is it a conversation saved by convo?") from None
    except OSError as exc:
        raise ConversationFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConversationFileError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); the file may be truncated"
        ) from None
    except RecursionError:
        raise ConversationFileError(f"{path} is nested too deeply to be a conversation file; was it tampered with?") from None
    try:
        return from_dict(cls, data, strategy=strategy, counter=counter, client=client, tools=tools)
    except ConversationFileError as exc:
        raise ConversationFileError(f"{path}: {exc}") from None


def _load_strategy(config: Any) -> Strategy | None:
    """The saved strategy, rebuilt exactly; None (the default) for files that have none."""
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise InvalidConfigError(f"'strategy' must be an object with a 'type', got {config!r}")
    return strategy_from_config(config)


def _load_summary(data: Any, turns: int) -> Summary | None:
    """The saved summary (a field added in version 1 files; older files have none)."""
    if data is None:
        return None
    if not isinstance(data, Mapping) or not isinstance(data.get("text"), str) or not data["text"].strip():
        raise InvalidMessageError("'summary' must be an object with a non-empty 'text'")
    covered = data.get("turns")
    if isinstance(covered, bool) or not isinstance(covered, int) or not 0 <= covered <= turns:
        raise InvalidMessageError(f"'summary.turns' must be an int from 0 to {turns}, got {covered!r}")
    return Summary(data["text"], covered)


def _load_mapping(data: Any) -> dict[str, str]:
    """The placeholder mapping of a file written before mappings stopped being written (they
    hold the values; see ``convo._written``): read so such a file keeps its meaning."""
    if data is None:
        return {}
    mapping = data.get("mapping") if isinstance(data, Mapping) else None
    if not isinstance(mapping, Mapping) or not all(
        isinstance(k, str) and PLACEHOLDER.fullmatch(k) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise InvalidMessageError("'redaction.mapping' must map placeholders such as '[EMAIL_1]' to strings")
    return dict(mapping)
