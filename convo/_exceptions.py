"""The errors convo raises, one tree keyed by cause.

::

    ConvoError
    ├── InvalidInputError (also ValueError)    the caller passed something unusable
    │   ├── InvalidMessageError                a message or history breaks an API rule
    │   ├── ModelRuleError                     a request breaks its model's rule: not sent
    │   ├── InvalidConfigError                 a bad budget, model, system prompt, strategy...
    │   │   ├── UnknownModelError              no price for a model (convo.prices)
    │   │   ├── ClientMismatchError            a sync method with an AsyncClient, or the reverse
    │   │   └── ReadOnlySettingError           a client setting fixed at construction was assigned
    │   └── TextFileError                      a file to chunk is missing, binary or not UTF-8
    ├── ContextOverflowError                   what must be kept cannot fit in the budget
    ├── ConversationFileError                  a saved conversation cannot be read or written
    │   └── StoreError                         a conversation store failed (down, timed out): conv.flush() later
    ├── ConflictError                          a stored conversation changed since this handle read it
    ├── ConversationBusyError                  a turn is in progress on this conversation object
    ├── TokenCountError                        counting tokens failed (e.g. the API was unreachable)
    ├── SummaryError                           a summary came back empty or not shorter: turns kept
    ├── RateLimitStoreError                    the shared rate-limit store (Redis, SQLite) failed
    ├── BudgetExceededError                    a request could pass the spending cap: not sent
    ├── BudgetStoreError                       a shared budget's store (Redis, SQLite) failed
    ├── CacheError                             a response cache cannot be opened, read or written
    ├── BatchTimeoutError                      Message Batches still running after max_wait: results() again
    ├── MaxStepsError                          a tool loop reached max_steps model calls (convo.reply)
    ├── OutputValidationError                  a reply does not fit send(output=...)'s schema
    ├── APIError                               the API answered with an error (after any retries)
    │   ├── BadRequestError          400, 422  the request is malformed: fix it, do not retry
    │   ├── AuthenticationError      401       the API key is missing, wrong or revoked
    │   ├── PermissionDeniedError    403       the key may not use this model or feature
    │   ├── NotFoundError            404       unknown model, path or id
    │   ├── RequestTooLargeError     413       the body is over the API's size limit
    │   ├── RateLimitError           429       still rate limited after the retries
    │   │   └── SpendLimitError      429       the account's spend limit is reached: never retried
    │   ├── OverloadedError          529       still overloaded after the retries and fallbacks
    │   └── ServerError              5xx       the API failed; retries did not help
    ├── APIConnectionError                     the API could not be reached, or timed out
    └── StreamError                            a stream failed after output reached the caller
        └── StreamRestartedError               the stream could not resume and starts over

Every message says what was wrong, the numbers involved, and what to do about it. An error
raised by a method leaves the object it was called on unchanged. An error translated from the
SDK's keeps it as ``__cause__``; :class:`APIError` carries its ``status_code`` and ``request_id``,
and so do :class:`StreamError` and :class:`TokenCountError` when the failing response had them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from ._credentials import scrub_credentials

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BatchTimeoutError",
    "ClientMismatchError",
    "ConflictError",
    "ContextOverflowError",
    "ConversationBusyError",
    "ConversationFileError",
    "ConvoError",
    "InvalidConfigError",
    "InvalidInputError",
    "InvalidMessageError",
    "ModelRuleError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimitStoreError",
    "ReadOnlySettingError",
    "RequestTooLargeError",
    "ServerError",
    "SpendLimitError",
    "StoreError",
    "StreamError",
    "StreamRestartedError",
    "SummaryError",
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


class ClientMismatchError(InvalidConfigError):
    """A sync method (``send``, ``stream``) was called with an :class:`~convo.AsyncClient`, or an
    async one (``asend``, ``astream``) with a :class:`~convo.Client`. Raised before anything was
    sent or changed; the message names the method (or the client) to use instead.
    """

class ReadOnlySettingError(InvalidConfigError, AttributeError):
    """A client setting that is fixed at construction (the connection, the clock, the concurrency
    slots) was assigned; nothing changed. ``client.with_options(name=value)`` returns a copy with
    it changed. ``setting`` names it.
    """

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class ModelRuleError(InvalidInputError):
    """A request breaks a rule of its model that would make the API refuse it (a 400), so it was
    not sent. ``rule`` names the rule (e.g. ``"max_tokens"``, ``"prefill"``, ``"sampling"``) and
    ``model`` the model; the message gives the numbers and what to change.
    """

    def __init__(self, message: str, *, rule: str, model: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.model = model


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


class StoreError(ConversationFileError):
    """A conversation store could not be reached or failed (server down, timed out, closed).

    ``store`` names it (its kind and location, without a password). When it was a write, the
    handle keeps its changes (``unsaved``: the messages the store does not have) and writes them
    with its next change, or at ``conv.flush()`` once the store is back.
    """

    def __init__(self, message: str, *, store: str, unsaved: Any = ()) -> None:
        super().__init__(message)
        self.store = store
        self.unsaved: list[Any] = list(unsaved)


class ConflictError(ConvoError):
    """Another handle wrote the stored conversation since this one read it (optimistic concurrency).

    Nothing was written; the store keeps the other writer's turn. ``unsaved`` holds this handle's
    messages that did not reach the store. Call ``conv.reload()`` to read the stored state, then
    send again (or ``conv.extend(exc.unsaved)`` to keep the reply you already paid for).
    """

    def __init__(
        self, message: str, *, conversation_id: str, expected: int, actual: int | None, unsaved: Any = ()
    ) -> None:
        super().__init__(message)
        self.conversation_id = conversation_id
        self.expected = expected  # the version this handle read
        self.actual = actual  # the version in the store now (None: the conversation was deleted)
        self.unsaved: list[Any] = list(unsaved)


class ConversationBusyError(ConvoError):
    """A turn (or an edit) was started on a conversation while one of its turns is in progress.

    One :class:`~convo.Conversation` object holds one history: two turns at once (an
    ``asyncio.gather`` of two ``asend``, two threads, a ``send`` from inside a tool, a stream not
    yet read to its end) would interleave their messages. The second is refused before it changes
    anything; the running turn goes on. Wait for it, or use ``conv.fork()`` for a turn of its own.
    """


class _Response:
    """``status_code`` and ``request_id`` of the response that failed, for an error that is not an
    :class:`APIError`: as given, or else read from the SDK error that is its ``__cause__``."""

    __cause__: BaseException | None
    _status_code: int | None = None
    _request_id: str | None = None

    @property
    def status_code(self) -> int | None:
        """The HTTP status of the failing response (200 for an error event mid-stream), or None."""
        if self._status_code is not None:
            return self._status_code
        status = getattr(self.__cause__, "status_code", None)
        return status if isinstance(status, int) else None

    @property
    def request_id(self) -> str | None:
        """The ``request-id`` of the failing response, or None (e.g. it was never reached)."""
        return self._request_id if self._request_id is not None else request_id_of(self.__cause__)

    @property
    def error_type(self) -> str | None:
        """The API's error ``type`` (``overloaded_error`` for an overloaded stream), or None."""
        kind = getattr(self.__cause__, "type", None)
        return kind if isinstance(kind, str) else None


class TokenCountError(_Response, ConvoError):
    """Counting tokens failed, for example because the count_tokens endpoint was unreachable.
    When the API answered, ``status_code`` and ``request_id`` say with what."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        scrub_credentials(sys.exc_info()[1])  # the SDK error being handled becomes the cause


class SummaryError(ConvoError):
    """A summary could not be used: the summarizer returned nothing, or every try came out no
    shorter than the turns it would replace. The turns were kept; ``Conversation.summary_error``
    says why. Use a shorter summary prompt, a smaller ``keep``, or a window strategy instead.
    """


class RateLimitStoreError(ConvoError):
    """The shared rate-limit store failed: a :class:`~convo.RedisStore` unreachable, refused, timed
    out or its script errored, or a :class:`~convo.SQLiteStore` file locked past its timeout or not
    writable. Nothing was reserved; check the server and URL, or the file.
    """


class BatchTimeoutError(ConvoError):
    """The batches did not end within ``max_wait`` seconds of polling. Nothing is lost: the job
    goes on at Anthropic; call ``results()`` again (or ``BatchJob.resume``) to keep waiting."""

    def __init__(self, message: str, *, batch_ids: Sequence[str], waited: float) -> None:
        super().__init__(message)
        self.batch_ids = list(batch_ids)
        self.waited = waited


class APIError(ConvoError):
    """The API answered with an error. ``status_code``, ``error_type`` (the API's
    ``error.type``), ``request_id`` (the response's ``request-id``) and ``attempts`` say what
    happened; the SDK's exception is the ``__cause__`` (an item of a Message Batches result has
    none: its error came inside the results file).
    """

    hint = "see the message from the API"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        self.request_id = request_id
        self.attempts = attempts


class BadRequestError(APIError):
    """The API refused the request as malformed (400, or 422); it is not retried.

    The message quotes what the API objected to: fix that and send again.
    """

    hint = "the request is invalid; fix what the API names (it is not retried)"


class AuthenticationError(APIError):
    """The API refused the API key (401): it is missing, wrong or revoked. Not retried.

    Set ``ANTHROPIC_API_KEY`` or pass ``Client(api_key=...)`` with a valid key.
    """

    hint = "check the API key (ANTHROPIC_API_KEY or Client(api_key=...))"


class PermissionDeniedError(APIError):
    """The key is valid but may not use this model or feature (403). Not retried.

    Check the key's workspace and permissions, or use another model.
    """

    hint = "this key may not use this model or feature; check the key's workspace and permissions"


class NotFoundError(APIError):
    """The API knows no such model, path or id (404). Not retried.

    Check the model name and the client's ``base_url``.
    """

    hint = "check the model name and the base_url"


class RequestTooLargeError(APIError):
    """The request body is over the API's size limit (413). Not retried.

    Send less in one request: chunk a long document (:func:`convo.map_reduce`) or send files by
    id instead of inline.
    """

    hint = "the request is over the API's size limit (32 MB); send less, e.g. chunk the document"


class RateLimitError(APIError):
    """Still rate limited (429) after convo's retries.

    Send more slowly, or give ``Client(limits=RateLimits(...))`` so requests are paced
    before they are sent.
    """

    hint = "still rate limited after retrying; slow down, or set Client(limits=...) to pace requests"


class SpendLimitError(RateLimitError):
    """The account's spend limit is reached: a 429 that says so and gives no ``retry-after``. Raised at
    once, never retried, since waiting does not help.

    Raise the spend limit in the Claude Console, or wait for the next calendar month.
    """

    hint = "the account's spend limit is reached; raise it in the console (retrying will not help)"


class OverloadedError(APIError):
    """The API was still overloaded (529) after the retries and any ``fallback_models``.

    Try again later, or pass ``Client(fallback_models=[...])``: after ``RetryPolicy.fallback_after``
    overloaded answers in a row, convo moves to the next model.
    """

    hint = "the API is overloaded; retry later or name fallback_models"


class ServerError(APIError):
    """The API failed with a 5xx status (other than 529) and the retries did not help.

    Try again later; ``request_id`` identifies the failed request.
    """

    hint = "the API failed; retry later"


class APIConnectionError(ConvoError):
    """The API could not be reached, the connection dropped, or the request timed out."""

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class StreamError(_Response, ConvoError):
    """A stream failed for good. ``partial`` is the text the caller had already received.

    ``status_code`` and ``request_id`` are those of the failing response when it had them (an
    ``error`` event mid-stream arrives on a 200 response that has a ``request-id``); if not
    given, they are read from the SDK error that is the ``__cause__``; ``error_type`` is that
    error's API type (``overloaded_error``), or None.
    """

    def __init__(
        self,
        message: str,
        *,
        partial: str = "",
        attempts: int = 1,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        scrub_credentials(sys.exc_info()[1])  # the SDK error being handled becomes the cause
        self.partial = partial
        self.attempts = attempts
        self._status_code = status_code
        self._request_id = request_id


class StreamRestartedError(StreamError):
    """A stream failed after text reached the caller and could not be continued (it held a
    tool call or thinking); it is being sent again from the start. Raised from ``text_stream``
    unless the caller passed ``on_restart=``; ``partial`` is what the caller had seen.
    """


def request_id_of(exc: BaseException | None) -> str | None:
    """The ``request-id`` an SDK error carries (``APIStatusError.request_id``), or None."""
    request_id = getattr(exc, "request_id", None)
    return request_id if isinstance(request_id, str) else None
