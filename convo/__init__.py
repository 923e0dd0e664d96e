"""convo: multi-turn conversations for the Claude API that fit their token budget.

>>> import convo
>>> conv = convo.Conversation("You are terse.", model="claude-sonnet-4-6", budget=8000)
>>> conv.add_user("Hello")
>>> conv.request()["messages"]
[{'role': 'user', 'content': 'Hello'}]
"""

from ._calls import Restart
from ._exceptions import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ContextOverflowError,
    ConversationFileError,
    ConvoError,
    InvalidConfigError,
    InvalidInputError,
    InvalidMessageError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServerError,
    SpendLimitError,
    StreamError,
    StreamRestartedError,
    TokenCountError,
)
from .budget import Budget, BudgetExceededError
from .client import AsyncClient, AsyncStream, Client, Stream
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
from .prices import PriceTable, UnknownModelError
from .ratelimit import MemoryStore, RateLimits, RedisStore
from .retry import RetryBudget, RetryPolicy
from .strategies import Selection, SlidingWindow, Strategy, TrimState
from .tokens import CachedCounter, ExactCounter, OfflineCounter, TokenCounter, count_tokens
from .usage import Stats

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "Budget",
    "BudgetExceededError",
    "CachedCounter",
    "Client",
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
    "MemoryStore",
    "Message",
    "NotFoundError",
    "OfflineCounter",
    "OverloadedError",
    "PermissionDeniedError",
    "PriceTable",
    "RateLimitError",
    "RateLimits",
    "RedactedThinkingBlock",
    "RedisStore",
    "RequestTooLargeError",
    "Restart",
    "RetryBudget",
    "RetryPolicy",
    "Selection",
    "ServerError",
    "SlidingWindow",
    "SpendLimitError",
    "Stats",
    "Strategy",
    "Stream",
    "StreamError",
    "StreamRestartedError",
    "TextBlock",
    "ThinkingBlock",
    "TokenCountError",
    "TokenCounter",
    "ToolResultBlock",
    "ToolUseBlock",
    "TrimState",
    "UnknownModelError",
    "__version__",
    "check_history",
    "count_tokens",
    "to_message",
]
