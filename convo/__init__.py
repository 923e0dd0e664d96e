"""convo: multi-turn conversations for the Claude API that fit their token budget.

>>> import convo
>>> conv = convo.Conversation("You are terse.", model="claude-sonnet-5-5", budget=8000)
>>> conv.add_user("Hello")
>>> conv.request()["messages"]
[{'role': 'user', 'content': 'Hello'}]
"""

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
    ModelRuleError,
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
from ._resume import Restart
from .batch import Result
from .budget import Budget, BudgetExceededError
from .cache import (
    Cache,
    CacheError,
    MemoryCache,
    RedisCache,
    SQLiteCache,
    cache_key,
    is_cacheable,
)
from .checkpoint import Checkpoint
from .chunking import Chunk, TextFileError, chunk_file, chunk_text
from .client import AsyncClient, AsyncStream, Client, Stream
from .context_edits import AppliedEdit, Compaction, ServerEdits, applied_edits, compaction_of, supports_context_edits
from .conversation import Conversation
from .mapreduce import MapReduceResult, amap_reduce, map_reduce
from .messages import (
    CompactionBlock,
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
from .models import Catalogue, ModelInfo
from .prices import PriceTable, UnknownModelError
from .ratelimit import MemoryStore, RateLimits, RedisStore
from .receipts import Receipt
from .redact import Finding, Redaction, Redactor, Restorer, restore, restore_message
from .retry import RetryBudget, RetryPolicy
from .strategies import Selection, SlidingWindow, Strategy, TrimState
from .summarize import Summarize, Summary
from .tokens import (
    CachedCounter,
    ExactCounter,
    OfflineCounter,
    TokenCounter,
    count_tokens,
)
from .usage import Stats

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "AppliedEdit",
    "AsyncClient",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "Budget",
    "BudgetExceededError",
    "Cache",
    "CacheError",
    "CachedCounter",
    "Catalogue",
    "Checkpoint",
    "Chunk",
    "Client",
    "Compaction",
    "CompactionBlock",
    "ContextOverflowError",
    "Conversation",
    "ConversationFileError",
    "ConvoError",
    "DocumentBlock",
    "ExactCounter",
    "Finding",
    "ImageBlock",
    "InvalidConfigError",
    "InvalidInputError",
    "InvalidMessageError",
    "MapReduceResult",
    "MemoryCache",
    "MemoryStore",
    "Message",
    "ModelInfo",
    "ModelRuleError",
    "NotFoundError",
    "OfflineCounter",
    "OverloadedError",
    "PermissionDeniedError",
    "PriceTable",
    "RateLimitError",
    "RateLimits",
    "Receipt",
    "RedactedThinkingBlock",
    "Redaction",
    "Redactor",
    "RedisCache",
    "RedisStore",
    "RequestTooLargeError",
    "Restart",
    "Restorer",
    "Result",
    "RetryBudget",
    "RetryPolicy",
    "SQLiteCache",
    "Selection",
    "ServerEdits",
    "ServerError",
    "SlidingWindow",
    "SpendLimitError",
    "Stats",
    "Strategy",
    "Stream",
    "StreamError",
    "StreamRestartedError",
    "Summarize",
    "Summary",
    "TextBlock",
    "TextFileError",
    "ThinkingBlock",
    "TokenCountError",
    "TokenCounter",
    "ToolResultBlock",
    "ToolUseBlock",
    "TrimState",
    "UnknownModelError",
    "__version__",
    "amap_reduce",
    "applied_edits",
    "cache_key",
    "check_history",
    "chunk_file",
    "chunk_text",
    "compaction_of",
    "count_tokens",
    "is_cacheable",
    "map_reduce",
    "restore",
    "restore_message",
    "supports_context_edits",
    "to_message",
]
