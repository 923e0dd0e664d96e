"""Messages and content blocks as pydantic models, and the Messages API's rules for a history.

Everything that takes a message accepts a :class:`Message`, a plain dict in the API's own
shape (``{"role": "user", "content": "hi"}``) or a response object from the SDK; it is
normalized once, at the boundary, by :func:`to_message`. Models are frozen so a token count
computed for a message stays true for as long as the message exists.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ._exceptions import InvalidMessageError

__all__ = [
    "Block",
    "CompactionBlock",
    "DocumentBlock",
    "ImageBlock",
    "Message",
    "RedactedThinkingBlock",
    "TextBlock",
    "ThinkingBlock",
    "ToolResultBlock",
    "ToolUseBlock",
    "check_history",
    "is_turn_start",
    "to_message",
    "to_system",
]

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
USER_BLOCKS = frozenset({"text", "image", "document", "tool_result"})
ASSISTANT_BLOCKS = frozenset({"text", "tool_use", "thinking", "redacted_thinking", "compaction"})


class _Model(BaseModel):
    # Unknown fields (cache_control, citations, newer API additions) pass through untouched.
    model_config = ConfigDict(frozen=True, extra="allow")


def _non_blank(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} is empty; the API rejects empty or whitespace-only text")
    return value


# -- sources -----------------------------------------------------------------------------


def _check_base64(data: str) -> str:
    if not data:
        raise ValueError("source.data is empty; give the base64-encoded bytes")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"source.data is not valid base64 ({exc})") from None
    return data


class _Base64(_Model):
    type: Literal["base64"]
    data: str

    @field_validator("data")
    @classmethod
    def _data(cls, v: str) -> str:
        return _check_base64(v)


class Base64ImageSource(_Base64):
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]


class Base64PDFSource(_Base64):
    media_type: Literal["application/pdf"]


class PlainTextSource(_Model):
    type: Literal["text"]
    media_type: Literal["text/plain"] = "text/plain"
    data: str


class URLSource(_Model):
    type: Literal["url"]
    url: str = Field(min_length=1)


class FileSource(_Model):
    type: Literal["file"]
    file_id: str = Field(min_length=1)


# -- blocks ------------------------------------------------------------------------------


class TextBlock(_Model):
    type: Literal["text"] = "text"
    text: str

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        return _non_blank(v, "text block")


class ImageBlock(_Model):
    type: Literal["image"] = "image"
    source: Annotated[Union[Base64ImageSource, URLSource, FileSource], Field(discriminator="type")]


class ContentSource(_Model):
    type: Literal["content"]
    content: Union[str, tuple[Annotated[Union[TextBlock, ImageBlock], Field(discriminator="type")], ...]]


class DocumentBlock(_Model):
    type: Literal["document"] = "document"
    source: Union[Base64PDFSource, PlainTextSource, ContentSource, URLSource, FileSource]
    title: str | None = None
    context: str | None = None


class ToolUseBlock(_Model):
    type: Literal["tool_use"] = "tool_use"
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


ToolResultContent = Annotated[Union[TextBlock, ImageBlock, DocumentBlock], Field(discriminator="type")]


class ToolResultBlock(_Model):
    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str = Field(min_length=1)
    content: Union[str, tuple[ToolResultContent, ...], None] = None
    is_error: bool | None = None


class ThinkingBlock(_Model):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class RedactedThinkingBlock(_Model):
    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


class CompactionBlock(_Model):
    """A server-side compaction of the earlier conversation; sent back verbatim afterwards."""

    type: Literal["compaction"] = "compaction"
    content: str | None = None
    encrypted_content: str | None = None
    signature: str | None = None


Block = Annotated[
    Union[
        TextBlock,
        ImageBlock,
        DocumentBlock,
        ToolUseBlock,
        ToolResultBlock,
        ThinkingBlock,
        RedactedThinkingBlock,
        CompactionBlock,
    ],
    Field(discriminator="type"),
]


class Message(_Model):
    """One turn of a conversation: ``role`` and ``content`` (a string or a tuple of blocks)."""

    role: Literal["user", "assistant"]
    content: Union[str, tuple[Block, ...]]

    @model_validator(mode="after")
    def _rules(self) -> Message:
        if isinstance(self.content, str):
            _non_blank(self.content, f"{self.role} message content")
            return self
        if not self.content:
            raise ValueError(f"{self.role} message has an empty content list; give at least one block")
        allowed = USER_BLOCKS if self.role == "user" else ASSISTANT_BLOCKS
        for block in self.content:
            if block.type not in allowed:
                raise ValueError(
                    f"a {block.type!r} block cannot appear in a {self.role} message "
                    f"(allowed there: {', '.join(sorted(allowed))})"
                )
        if self.role == "user":
            seen_other = False
            for block in self.content:
                if block.type != "tool_result":
                    seen_other = True
                elif seen_other:
                    raise ValueError("tool_result blocks must come before any other block in a user message")
        return self

    @property
    def blocks(self) -> tuple[Block, ...]:
        """The content as blocks (a string becomes one text block)."""
        if isinstance(self.content, str):
            return (TextBlock(text=self.content),)
        return self.content

    @property
    def text(self) -> str:
        """The text of the message, text blocks joined; other blocks are left out."""
        if isinstance(self.content, str):
            return self.content
        return "".join(b.text for b in self.content if isinstance(b, TextBlock))

    def tool_use_ids(self) -> list[str]:
        if isinstance(self.content, str):
            return []
        return [b.id for b in self.content if isinstance(b, ToolUseBlock)]

    def tool_result_ids(self) -> list[str]:
        if isinstance(self.content, str):
            return []
        return [b.tool_use_id for b in self.content if isinstance(b, ToolResultBlock)]

    def to_api(self) -> dict[str, Any]:
        """A fresh dict in the API's shape, safe for the caller to mutate."""
        if isinstance(self.content, str):  # the common case, 8x faster than model_dump
            return {"role": self.role, "content": self.content}
        return self.model_dump(mode="json", exclude_none=True)


# -- coercion ----------------------------------------------------------------------------


_NOISE = ("function-after", "tagged-union", "tuple[", "union[")


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors as one readable line, without union-branch noise."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        if len(loc) > 1 and loc[0] == "content" and loc[1] == "str":
            continue  # the content was a list; the "not a string" branch error says nothing
        where = ".".join(p for p in loc if not p.startswith(_NOISE))
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(dict.fromkeys(parts))


def _from_response(obj: Any) -> dict[str, Any]:
    """An SDK response (anthropic.types.Message) as a message dict for the history."""
    blocks = []
    for b in obj.content:
        d = b.model_dump(mode="json", exclude_none=True)
        if d.get("type") == "text":
            d.pop("citations", None)
            if not d.get("text", "").strip():
                continue
        blocks.append(d)
    return {"role": obj.role, "content": blocks}


def to_message(value: Any, *, role: str | None = None) -> Message:
    """Normalize ``value`` into a :class:`Message` or raise :class:`InvalidMessageError`.

    Accepts a Message, a dict in the API's shape, an SDK response message, or — when ``role``
    is given — bare content (a string, a block, or a list of blocks).
    """
    if isinstance(value, Message):
        if role is not None and value.role != role:
            raise InvalidMessageError(f"expected a {role} message, got a {value.role} message")
        return value
    is_block = isinstance(value, Mapping) and "type" in value and "role" not in value
    if role is not None and (is_block or (not isinstance(value, Mapping) and not hasattr(value, "role"))):
        if isinstance(value, BaseModel) or is_block:
            value = [value]
        if isinstance(value, (list, tuple)):
            value = [b.model_dump(mode="json", exclude_none=True) if isinstance(b, BaseModel) else b for b in value]
        value = {"role": role, "content": value}
    elif hasattr(value, "role") and hasattr(value, "content") and not isinstance(value, Mapping):
        value = _from_response(value)
    if not isinstance(value, Mapping):
        raise InvalidMessageError(
            f"a message must be a dict like {{'role': 'user', 'content': '...'}} or a convo.Message, "
            f"got {type(value).__name__}"
        )
    content = value.get("content")
    if not isinstance(content, (str, list, tuple)):
        raise InvalidMessageError(
            f"message content must be a string or a list of content blocks, got {type(content).__name__}"
        )
    if role is not None and value.get("role", role) != role:
        raise InvalidMessageError(f"expected a {role} message, got role {value.get('role')!r}")
    if "role" not in value:
        raise InvalidMessageError("message has no 'role'; use 'user' or 'assistant'")
    if value["role"] not in ("user", "assistant"):
        hint = " (put the system prompt in Conversation(system=...))" if value["role"] == "system" else ""
        raise InvalidMessageError(f"unknown role {value['role']!r}; use 'user' or 'assistant'{hint}")
    try:
        return Message.model_validate(value)
    except ValidationError as exc:
        raise InvalidMessageError(f"invalid {value['role']} message: {_describe(exc)}") from None


def to_system(value: Any) -> str | tuple[TextBlock, ...] | None:
    """Normalize a system prompt: None, a string, or a list of text blocks."""
    from ._exceptions import InvalidConfigError

    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        try:
            return tuple(b if isinstance(b, TextBlock) else TextBlock.model_validate(b) for b in value)
        except ValidationError as exc:
            raise InvalidConfigError(f"invalid system prompt block: {_describe(exc)}") from None
    raise InvalidConfigError(
        f"system must be a str (or a list of text blocks), got {type(value).__name__}; "
        "pass the prompt text, e.g. Conversation(system='You are terse.', ...)"
    )


# -- history rules -----------------------------------------------------------------------


def is_turn_start(message: Message) -> bool:
    """True for a user message that opens a new exchange (one that answers no tool call)."""
    if message.role != "user":
        return False
    return isinstance(message.content, str) or not any(b.type == "tool_result" for b in message.content)


def check_next(previous: Message | None, message: Message, seen_tool_ids: set[str] | None = None) -> None:
    """Check that ``message`` may follow ``previous``; raise InvalidMessageError if not."""
    if previous is None:
        if message.role != "user":
            raise InvalidMessageError(
                "the first message must be a user message; add the user's turn before the assistant's"
            )
    pending = set(previous.tool_use_ids()) if previous is not None and previous.role == "assistant" else set()
    results = message.tool_result_ids()
    if results:
        orphans = [i for i in results if i not in pending]
        if orphans:
            raise InvalidMessageError(
                f"tool_result for {orphans} answers no tool_use in the preceding assistant message; "
                "a tool_result must directly follow the assistant message that made the call"
            )
        if len(set(results)) != len(results):
            raise InvalidMessageError(f"duplicate tool_result ids {results}; answer each tool_use once")
    if pending:
        missing = sorted(pending - set(results))
        if message.role != "user" or missing:
            raise InvalidMessageError(
                f"the previous assistant message called tools {missing or sorted(pending)}; the next message "
                "must be a user message with a tool_result for each of them"
            )
    if seen_tool_ids is not None and message.role == "assistant":
        ids = message.tool_use_ids()
        dupes = [i for i in ids if i in seen_tool_ids] + [i for i in set(ids) if ids.count(i) > 1]
        if dupes:
            raise InvalidMessageError(f"tool_use id(s) {sorted(set(dupes))} already used; tool ids must be unique")


def check_history(messages: Iterable[Any]) -> list[Message]:
    """Normalize and validate a whole history; returns the messages or raises InvalidMessageError."""
    out: list[Message] = []
    seen: set[str] = set()
    for i, raw in enumerate(messages):
        msg = to_message(raw)
        try:
            check_next(out[-1] if out else None, msg, seen)
        except InvalidMessageError as exc:
            raise InvalidMessageError(f"message {i}: {exc}") from None
        seen.update(msg.tool_use_ids())
        out.append(msg)
    return out

