"""The errors convo raises, one tree keyed by cause.

::

    ConvoError
    ├── InvalidInputError (also ValueError)    the caller passed something unusable
    │   ├── InvalidMessageError                a message or history breaks an API rule
    │   └── InvalidConfigError                 a bad budget, model, system prompt, strategy...
    ├── ContextOverflowError                   what must be kept cannot fit in the budget
    ├── ConversationFileError                  a saved conversation cannot be read or written
    └── TokenCountError                        counting tokens failed (e.g. the API was unreachable)

Every message says what was wrong, the numbers involved, and what to do about it. An error
raised by a method leaves the object it was called on unchanged.
"""

from __future__ import annotations

__all__ = [
    "ContextOverflowError",
    "ConversationFileError",
    "ConvoError",
    "InvalidConfigError",
    "InvalidInputError",
    "InvalidMessageError",
    "TokenCountError",
]


class ConvoError(Exception):
    """Base of every error convo raises."""


class InvalidInputError(ConvoError, ValueError):
    """The caller passed a value convo cannot use; nothing was changed."""


class InvalidMessageError(InvalidInputError):
    """A message, or a history of messages, breaks a Messages API rule."""


class InvalidConfigError(InvalidInputError):
    """A setting (budget, model, system prompt, strategy, ...) is unusable."""


class ContextOverflowError(ConvoError):
    """Even the parts that must be kept do not fit in the token budget.

    ``needed`` is the estimated size of what must be sent (system prompt, pinned messages,
    the last user turn and ``max_tokens``); ``allowed`` is the budget.
    """

    def __init__(self, message: str, *, needed: int, allowed: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.allowed = allowed


class ConversationFileError(ConvoError):
    """A saved conversation could not be read (bad, truncated or foreign file) or written."""


class TokenCountError(ConvoError):
    """Counting tokens failed, for example because the count_tokens endpoint was unreachable."""
