"""convo: multi-turn conversations for the Claude API that fit their token budget.

>>> import convo
>>> conv = convo.Conversation("You are terse.", model="claude-sonnet-4-5", budget=8000)
>>> conv.add_user("Hello")
>>> conv.request()["messages"]
[{'role': 'user', 'content': 'Hello'}]
"""

from ._exceptions import (
    ContextOverflowError,
    ConversationFileError,
    ConvoError,
    InvalidConfigError,
    InvalidInputError,
    InvalidMessageError,
    TokenCountError,
)
from .conversation import Conversation
from .messages import (
    DocumentBlock,
    ImageBlock,
    Message,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    check_history,
    to_message,
)
from .strategies import Selection, SlidingWindow, Strategy, TrimState
from .tokens import CachedCounter, ExactCounter, OfflineCounter, TokenCounter, count_tokens

__version__ = "0.1.0"

__all__ = [
    "CachedCounter",
    "ContextOverflowError",
    "Conversation",
    "ConversationFileError",
    "ConvoError",
    "DocumentBlock",
    "ExactCounter",
    "ImageBlock",
    "InvalidConfigError",
    "InvalidInputError",
    "InvalidMessageError",
    "Message",
    "OfflineCounter",
    "RedactedThinkingBlock",
    "Selection",
    "SlidingWindow",
    "Strategy",
    "TextBlock",
    "ThinkingBlock",
    "TokenCountError",
    "TokenCounter",
    "ToolResultBlock",
    "ToolUseBlock",
    "TrimState",
    "__version__",
    "check_history",
    "count_tokens",
    "to_message",
]
