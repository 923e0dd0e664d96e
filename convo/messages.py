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
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from ._exceptions import InvalidMessageError

__all__ = [
    "Block",
    "CompactionBlock",
    "ContainerUploadBlock",
    "DocumentBlock",
    "ImageBlock",
    "MCPToolResultBlock",
    "MCPToolUseBlock",
    "Message",
    "OtherBlock",
    "RedactedThinkingBlock",
    "SearchResultBlock",
    "ServerToolResultBlock",
    "ServerToolUseBlock",
    "TextBlock",
    "ThinkingBlock",
    "ToolResultBlock",
    "ToolUseBlock",
    "check_final",
    "check_history",
    "is_turn_start",
    "to_message",
    "to_system",
]

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
#: Block types each role may hold. Server-tool results (``web_search_tool_result``,
#: ``code_execution_tool_result``, any ``*_tool_result`` but ``tool_result``) are assistant
#: blocks too; a block type convo does not know may appear in either role.
USER_BLOCKS = frozenset({"text", "image", "document", "tool_result", "search_result", "container_upload"})
ASSISTANT_BLOCKS = frozenset(
    {
        "text",
        "tool_use",
        "thinking",
        "redacted_thinking",
        "compaction",
        "server_tool_use",
        "server_tool_result",
        "mcp_tool_use",
        "mcp_tool_result",
        "container_upload",
    }
)


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
    """Text. Empty text is refused; whitespace-only text is accepted beside other content (the
    API accepts it there) but not as a message's only content."""

    type: Literal["text"] = "text"
    text: str

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v:
            raise ValueError("text block is empty; the API rejects empty text blocks")
        return v


class ImageBlock(_Model):
    """An image for the model to look at, in a user message or a tool result.

    ``source`` is base64 data (``media_type`` ``image/jpeg``, ``image/png``, ``image/gif`` or
    ``image/webp``; the data must decode), a URL, or the id of an uploaded file.
    """

    type: Literal["image"] = "image"
    source: Annotated[Base64ImageSource | URLSource | FileSource, Field(discriminator="type")]


class ContentSource(_Model):
    type: Literal["content"]
    content: str | tuple[Annotated[TextBlock | ImageBlock, Field(discriminator="type")], ...]


class DocumentBlock(_Model):
    """A document for the model to read, in a user message or a tool result.

    ``source`` is a base64 PDF, plain text, custom content (``type: "content"``: a string or text and
    image blocks), a URL, or the id of an uploaded file; ``title`` and ``context`` are optional text
    sent with it. Other fields (``citations``, ``cache_control``) pass through as given.
    """

    type: Literal["document"] = "document"
    source: Base64PDFSource | PlainTextSource | ContentSource | URLSource | FileSource
    title: str | None = None
    context: str | None = None


class ToolUseBlock(_Model):
    """The model's call of one of your tools: ``name`` with the arguments in ``input``.

    Answer it in the next message, a user message, with a :class:`ToolResultBlock` of the same ``id``;
    convo checks this pairing before sending.
    """

    type: Literal["tool_use"] = "tool_use"
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class _Verbatim(_Model):
    """A block convo does not interpret: it is kept and sent back exactly as it came."""

    @model_serializer(mode="plain")
    def _as_given(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in type(self).model_fields if name in self.model_fields_set}
        return {"type": self.type, **fields, **(self.model_extra or {})}  # type: ignore[attr-defined]


class SearchResultBlock(_Model):
    """A search result the caller supplies (in a user message or a tool result), citable by the model."""

    type: Literal["search_result"] = "search_result"
    source: str = Field(min_length=1)
    title: str
    content: tuple[TextBlock, ...] = Field(min_length=1)


class ContainerUploadBlock(_Model):
    """A file (by id) put into the code-execution container."""

    type: Literal["container_upload"] = "container_upload"
    file_id: str = Field(min_length=1)


class ServerToolUseBlock(_Verbatim):
    """A call the API ran itself (web search, web fetch, code execution, ...); its result is a
    ``*_tool_result`` block later in the same assistant message."""

    type: Literal["server_tool_use"] = "server_tool_use"
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: Any = None


class ServerToolResultBlock(_Verbatim):
    """The result of a server tool call (``web_search_tool_result``, ``code_execution_tool_result``,
    ...), paired by ``tool_use_id`` with a ``server_tool_use`` in the same assistant message."""

    type: str
    tool_use_id: str = Field(min_length=1)
    content: Any = None


class MCPToolUseBlock(_Verbatim):
    """A call to a tool of a remote MCP server (the MCP connector)."""

    type: Literal["mcp_tool_use"] = "mcp_tool_use"
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    server_name: str = ""
    input: Any = None


class MCPToolResultBlock(_Verbatim):
    """The result of an ``mcp_tool_use``, in the same assistant message."""

    type: Literal["mcp_tool_result"] = "mcp_tool_result"
    tool_use_id: str = Field(min_length=1)
    content: Any = None
    is_error: bool | None = None


class OtherBlock(_Verbatim):
    """A block type convo does not model (a newer API addition): passed through verbatim."""

    type: str = Field(min_length=1)


_TAGGED = frozenset(
    {
        "text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
        "compaction", "search_result", "container_upload", "server_tool_use", "mcp_tool_use",
        "mcp_tool_result",
    }
)  # fmt: skip


def block_kind(type_: object) -> str:
    """The model a block of API type ``type_`` is read into (its tag in :data:`Block`)."""
    if not isinstance(type_, str):
        return "other"
    if type_ in _TAGGED:
        return type_
    if type_.endswith("_tool_result"):
        return "server_tool_result"
    return "other"


def _tag(value: Any) -> str:
    return block_kind(value.get("type") if isinstance(value, Mapping) else getattr(value, "type", None))


ToolResultContent = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[DocumentBlock, Tag("document")]
    | Annotated[SearchResultBlock, Tag("search_result")]
    | Annotated[OtherBlock, Tag("other")],
    Discriminator(lambda v: t if (t := _tag(v)) in ("text", "image", "document", "search_result") else "other"),
]


class ToolResultBlock(_Model):
    """Your answer to a :class:`ToolUseBlock`, matched by ``tool_use_id``.

    ``content`` is a string or blocks (text, image, document, search result); ``is_error=True`` tells
    the model the call failed. Tool results come before any other block of their user message.
    """

    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str = Field(min_length=1)
    content: str | tuple[ToolResultContent, ...] | None = None
    is_error: bool | None = None


class ThinkingBlock(_Model):
    """The model's extended thinking, with the ``signature`` the API uses to check that the
    block came from Claude.

    Send it back unchanged with the rest of the assistant turn; in a tool-use loop with
    thinking the API needs it.
    """

    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class RedactedThinkingBlock(_Model):
    """Thinking the API returned encrypted (``data``, not human-readable).

    Send it back unchanged, like a :class:`ThinkingBlock`; the API decrypts it, so the model
    keeps its reasoning.
    """

    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


class CompactionBlock(_Model):
    """A server-side compaction of the earlier conversation; sent back verbatim afterwards."""

    type: Literal["compaction"] = "compaction"
    content: str | None = None
    encrypted_content: str | None = None
    signature: str | None = None


Block = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[DocumentBlock, Tag("document")]
    | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[ToolResultBlock, Tag("tool_result")]
    | Annotated[ThinkingBlock, Tag("thinking")]
    | Annotated[RedactedThinkingBlock, Tag("redacted_thinking")]
    | Annotated[CompactionBlock, Tag("compaction")]
    | Annotated[SearchResultBlock, Tag("search_result")]
    | Annotated[ContainerUploadBlock, Tag("container_upload")]
    | Annotated[ServerToolUseBlock, Tag("server_tool_use")]
    | Annotated[ServerToolResultBlock, Tag("server_tool_result")]
    | Annotated[MCPToolUseBlock, Tag("mcp_tool_use")]
    | Annotated[MCPToolResultBlock, Tag("mcp_tool_result")]
    | Annotated[OtherBlock, Tag("other")],
    Discriminator(_tag),
]


class Message(_Model):
    """One turn of a conversation: ``role`` and ``content`` (a string or a tuple of blocks)."""

    role: Literal["user", "assistant"]
    content: str | tuple[Block, ...]

    @model_validator(mode="after")
    def _rules(self) -> Message:
        if isinstance(self.content, str):
            _non_blank(self.content, f"{self.role} message content")
            return self
        if not self.content:
            raise ValueError(f"{self.role} message has an empty content list; give at least one block")
        if all(isinstance(b, TextBlock) and not b.text.strip() for b in self.content):
            raise ValueError(f"{self.role} message holds only whitespace; the API rejects blank messages")
        allowed = USER_BLOCKS if self.role == "user" else ASSISTANT_BLOCKS
        for block in self.content:
            kind = block_kind(block.type)
            if kind != "other" and kind not in allowed:
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
        else:
            _check_server_pairs(self.content)
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
        """The ids of this message's tool calls (``tool_use`` blocks), in order."""
        if isinstance(self.content, str):
            return []
        return [b.id for b in self.content if isinstance(b, ToolUseBlock)]

    def tool_result_ids(self) -> list[str]:
        """The ``tool_use_id`` of each of this message's ``tool_result`` blocks, in order."""
        if isinstance(self.content, str):
            return []
        return [b.tool_use_id for b in self.content if isinstance(b, ToolResultBlock)]

    def to_api(self) -> dict[str, Any]:
        """A fresh dict in the API's shape, safe for the caller to mutate."""
        if isinstance(self.content, str):  # the common case, 8x faster than model_dump
            return {"role": self.role, "content": self.content}
        return self.model_dump(mode="json", exclude_none=True)


def _check_server_pairs(content: tuple[Any, ...]) -> None:
    """Server and MCP tool results answer a call made earlier in the same assistant message.

    A call without its result yet is accepted: a turn paused by the API (``pause_turn``) is
    sent back as it is for the API to go on.
    """
    calls: set[str] = set()
    answered: set[str] = set()
    for block in content:
        if isinstance(block, (ServerToolUseBlock, MCPToolUseBlock)):
            if block.id in calls:
                raise ValueError(f"server tool call id {block.id!r} is used twice in one assistant message")
            calls.add(block.id)
        elif isinstance(block, (ServerToolResultBlock, MCPToolResultBlock)):
            if block.tool_use_id not in calls:
                raise ValueError(
                    f"{block.type} for {block.tool_use_id!r} answers no earlier server_tool_use or mcp_tool_use "
                    "in the same assistant message; keep the call and its result together, call first"
                )
            if block.tool_use_id in answered:
                raise ValueError(f"{block.type} for {block.tool_use_id!r} appears twice; a call has one result")
            answered.add(block.tool_use_id)


# -- coercion ----------------------------------------------------------------------------


_NOISE = ("function-after", "tagged-union", "tuple[", "union[")
_TAGS = _TAGGED | {"other", "server_tool_result"}


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors as one readable line, without union-branch noise."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        if len(loc) > 1 and loc[0] == "content" and loc[1] == "str":
            continue  # the content was a list; the "not a string" branch error says nothing
        # a block's tag (its union branch) after its index says nothing the type does not
        loc = [p for i, p in enumerate(loc) if not (i and loc[i - 1].isdigit() and p in _TAGS)]
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
    if previous is None and message.role != "user":
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


def check_final(messages: list[Message]) -> None:
    """The rule for the end of a request's history: a final assistant turn (a prefill) must not
    end in whitespace. convo refuses it rather than strip it, since stripping would change what
    the model continues from; remove the whitespace yourself (``text.rstrip()``)."""
    if not messages or messages[-1].role != "assistant":
        return
    last = messages[-1]
    tail = last.content if isinstance(last.content, str) else None
    if tail is None:
        final = last.content[-1]
        tail = final.text if isinstance(final, TextBlock) else None
    if tail is not None and tail != tail.rstrip():
        raise InvalidMessageError(
            f"message {len(messages) - 1}: the final assistant turn ends in whitespace ({tail[len(tail.rstrip()) :]!r}), "
            "which the API refuses (final assistant content cannot end with trailing whitespace); strip it"
        )


def check_history(messages: Iterable[Any]) -> list[Message]:
    """Normalize and validate a request's history; returns the messages or raises InvalidMessageError.

    The rules: the first message is a user message; each tool_use is answered by a tool_result
    in the next (user) message, and each result answers a call; server-tool results pair with
    their calls inside the assistant message; no message is empty or blank; a final assistant
    turn does not end in whitespace (:func:`check_final`). Consecutive turns of one role are
    accepted: the API merges them.
    """
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
    check_final(out)
    return out
