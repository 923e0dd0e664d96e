"""What convo writes of a conversation (a saved file, a store) holds what the API saw.

With a redactor — the conversation's, or else its client's — the system prompt, the messages
and the summary are written redacted, as they are sent: placeholders (numbered by the
conversation's one mapping, so a placeholder means one value throughout) or masks. The mapping
itself holds the values, so it is never written: a conversation opened or loaded again has the
placeholders in its history, sends the model the same text as before, and shows the user the
placeholders where the values were. The history in the process stays the user's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conversation import Conversation

__all__ = ["redactor_of", "written_messages", "written_system", "written_text"]


def redactor_of(conv: Conversation) -> Any:
    """The redactor whose findings must not be written: the conversation's, else its client's."""
    if conv.redactor is not None:
        return conv.redactor
    return getattr(conv.client, "redactor", None)


def written_messages(conv: Conversation, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` (the API's shape) as they are written: the same list without a redactor."""
    redactor = redactor_of(conv)
    return messages if redactor is None or not messages else list(_written(conv, redactor, {"messages": messages})["messages"])


def written_system(conv: Conversation, system: Any) -> Any:
    """The system prompt (None, a string or block dicts) as it is written."""
    redactor = redactor_of(conv)
    return system if redactor is None or system is None else _written(conv, redactor, {"system": system})["system"]


def written_text(conv: Conversation, text: str) -> str:
    """A text of the conversation's own (its summary) as it is written."""
    redactor = redactor_of(conv)
    return text if redactor is None else str(_written(conv, redactor, {"system": text})["system"])


def _written(conv: Conversation, redactor: Any, request: dict[str, Any]) -> dict[str, Any]:
    """``request`` redacted with the conversation's one numbering (which it extends); thinking
    gets its placeholders back, as the conversation's requests send it."""
    redacted: dict[str, Any]
    redacted, conv._mapping = redactor.redact_request(request, conv._mapping, thinking=True)
    return redacted
