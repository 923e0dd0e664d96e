"""Content blocks as frozen pydantic models: what one message's ``content`` may hold.

Each block type of the Messages API has a model here (with its sources); :data:`Block` is their
tagged union, and a block type convo does not know is read as :class:`OtherBlock` and passed
through verbatim. The rules for whole messages and histories are in :mod:`convo.messages`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_serializer

__all__ = [
    "ASSISTANT_BLOCKS",
    "TAGS",
    "USER_BLOCKS",
    "Block",
    "CompactionBlock",
    "ContainerUploadBlock",
    "DocumentBlock",
    "FrozenModel",
    "ImageBlock",
    "MCPToolResultBlock",
    "MCPToolUseBlock",
    "OtherBlock",
    "RedactedThinkingBlock",
    "SearchResultBlock",
    "ServerToolResultBlock",
    "ServerToolUseBlock",
    "TextBlock",
    "ThinkingBlock",
    "ToolResultBlock",
    "ToolUseBlock",
    "block_kind",
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


class FrozenModel(BaseModel):
    # The base of every block model and of convo.messages.Message.
    # Unknown fields (cache_control, citations, newer API additions) pass through untouched.
    model_config = ConfigDict(frozen=True, extra="allow")


# -- sources -----------------------------------------------------------------------------


def _check_base64(data: str) -> str:
    if not data:
        raise ValueError("source.data is empty; give the base64-encoded bytes")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"source.data is not valid base64 ({exc})") from None
    return data


class _Base64(FrozenModel):
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


class PlainTextSource(FrozenModel):
    type: Literal["text"]
    media_type: Literal["text/plain"] = "text/plain"
    data: str


class URLSource(FrozenModel):
    type: Literal["url"]
    url: str = Field(min_length=1)


class FileSource(FrozenModel):
    type: Literal["file"]
    file_id: str = Field(min_length=1)


# -- blocks ------------------------------------------------------------------------------


class TextBlock(FrozenModel):
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


class ImageBlock(FrozenModel):
    """An image for the model to look at, in a user message or a tool result.

    ``source`` is base64 data (``media_type`` ``image/jpeg``, ``image/png``, ``image/gif`` or
    ``image/webp``; the data must decode), a URL, or the id of an uploaded file.
    """

    type: Literal["image"] = "image"
    source: Annotated[Base64ImageSource | URLSource | FileSource, Field(discriminator="type")]


class ContentSource(FrozenModel):
    type: Literal["content"]
    content: str | tuple[Annotated[TextBlock | ImageBlock, Field(discriminator="type")], ...]


class DocumentBlock(FrozenModel):
    """A document for the model to read, in a user message or a tool result.

    ``source`` is a base64 PDF, plain text, custom content (``type: "content"``: a string or text and
    image blocks), a URL, or the id of an uploaded file; ``title`` and ``context`` are optional text
    sent with it. Other fields (``citations``, ``cache_control``) pass through as given.
    """

    type: Literal["document"] = "document"
    source: Base64PDFSource | PlainTextSource | ContentSource | URLSource | FileSource
    title: str | None = None
    context: str | None = None


class ToolUseBlock(FrozenModel):
    """The model's call of one of your tools: ``name`` with the arguments in ``input``.

    Answer it in the next message, a user message, with a :class:`ToolResultBlock` of the same ``id``;
    convo checks this pairing before sending.
    """

    type: Literal["tool_use"] = "tool_use"
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class _Verbatim(FrozenModel):
    """A block convo does not interpret: it is kept and sent back exactly as it came."""

    @model_serializer(mode="plain")
    def _as_given(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in type(self).model_fields if name in self.model_fields_set}
        return {"type": self.type, **fields, **(self.model_extra or {})}  # type: ignore[attr-defined]


class SearchResultBlock(FrozenModel):
    """A search result the caller supplies (in a user message or a tool result), citable by the model."""

    type: Literal["search_result"] = "search_result"
    source: str = Field(min_length=1)
    title: str
    content: tuple[TextBlock, ...] = Field(min_length=1)


class ContainerUploadBlock(FrozenModel):
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


#: Every tag of :data:`Block` (the model names a block of any type is read into).
TAGS = _TAGGED | {"other", "server_tool_result"}


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


class ToolResultBlock(FrozenModel):
    """Your answer to a :class:`ToolUseBlock`, matched by ``tool_use_id``.

    ``content`` is a string or blocks (text, image, document, search result); ``is_error=True`` tells
    the model the call failed. Tool results come before any other block of their user message.
    """

    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str = Field(min_length=1)
    content: str | tuple[ToolResultContent, ...] | None = None
    is_error: bool | None = None


class ThinkingBlock(FrozenModel):
    """The model's extended thinking, with the ``signature`` the API uses to check that the
    block came from Claude.

    Send it back unchanged with the rest of the assistant turn; in a tool-use loop with
    thinking the API needs it.
    """

    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class RedactedThinkingBlock(FrozenModel):
    """Thinking the API returned encrypted (``data``, not human-readable).

    Send it back unchanged, like a :class:`ThinkingBlock`; the API decrypts it, so the model
    keeps its reasoning.
    """

    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


class CompactionBlock(FrozenModel):
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
