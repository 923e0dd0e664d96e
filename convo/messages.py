"""Messages as pydantic models, and the Messages API's rules for a history.

Everything that takes a message accepts a :class:`Message`, a plain dict in the API's own
shape (``{"role": "user", "content": "hi"}``) or a response object from the SDK; it is
normalized once, at the boundary, by :func:`to_message`. Models are frozen so a token count
computed for a message stays true for as long as the message exists. The content blocks are
in :mod:`convo.blocks` (and importable from here too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ValidationError, model_validator

from ._exceptions import InvalidInputError, InvalidMessageError
from ._preflight import check_json
from .blocks import (
    ASSISTANT_BLOCKS,
    TAGS,
    USER_BLOCKS,
    Block,
    CompactionBlock,
    ContainerUploadBlock,
    DocumentBlock,
    FrozenModel,
    ImageBlock,
    MCPToolResultBlock,
    MCPToolUseBlock,
    OtherBlock,
    RedactedThinkingBlock,
    SearchResultBlock,
    ServerToolResultBlock,
    ServerToolUseBlock,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    block_kind,
)

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


class Message(FrozenModel):
    """One turn of a conversation: ``role`` and ``content`` (a string or a tuple of blocks)."""

    role: Literal["user", "assistant"]
    content: str | tuple[Block, ...]

    @model_validator(mode="after")
    def _rules(self) -> Message:
        if isinstance(self.content, str):
            if not self.content or self.content.isspace():  # what str.strip() would empty
                raise ValueError(f"{self.role} message content is empty; the API rejects empty or whitespace-only text")
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


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors as one readable line, without union-branch noise."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        if len(loc) > 1 and loc[0] == "content" and loc[1] == "str":
            continue  # the content was a list; the "not a string" branch error says nothing
        # a block's tag (its union branch) after its index says nothing the type does not
        loc = [p for i, p in enumerate(loc) if not (i and loc[i - 1].isdigit() and p in TAGS)]
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
    try:  # a lone surrogate, a NaN, an object(): refused here, not by the JSON encoder at send time
        check_json(content, "message content")
    except InvalidInputError as exc:
        raise InvalidMessageError(str(exc)) from None
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

    if value is None:
        return value
    if isinstance(value, (str, list, tuple)):
        try:
            check_json(value, "the system prompt")
        except InvalidInputError as exc:
            raise InvalidConfigError(str(exc)) from None
    if isinstance(value, str):
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
    if isinstance(message.content, str) and (previous is None or isinstance(previous.content, str)):
        return  # plain text after plain text: no tool call to answer, none made (the common case)
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
