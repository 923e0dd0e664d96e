"""Requests normalized once, at the boundary: the API's shape, checked against the model's rules.

``Base`` is what the sync and async clients share beyond their settings: building a request
from ``create``'s arguments (checked by ``_preflight`` before anything is sent) and the key of
the Models API catalogue cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import _models_live
from ._exceptions import InvalidConfigError
from ._preflight import check_request
from ._settings import Settings
from .messages import Message, check_final, check_history, to_message, to_system
from .models import DEFAULT_MODEL, Catalogue

__all__ = ["Base"]


def _api_message(m: Any) -> dict[str, Any]:
    """A message in the API's shape, validated; plain text dicts take a fast path."""
    if type(m) is dict and len(m) == 2 and m.get("role") in ("user", "assistant"):
        content = m.get("content")
        if type(content) is str and content.strip():
            return {"role": m["role"], "content": content}
    return m.to_api() if isinstance(m, Message) else to_message(m).to_api()


class Base(Settings):
    """Request building and the model catalogue, shared by the sync and async clients."""

    def _models_key(self) -> str:
        return _models_live.cache_key(self._base_url, self._api_key)

    def _models_hit(self, refresh: bool, ttl: float) -> Catalogue | None:
        hit = None if refresh else _models_live.cached(self._models_key(), ttl)
        if hit is not None:
            self.catalogue = hit
        return hit

    def _request(
        self,
        messages: Iterable[Any],
        system: Any,
        max_tokens: int,
        model: str | None,
        params: dict[str, Any],
        *,
        method: str = "create",
        batch: bool = False,
    ) -> dict[str, Any]:
        """Normalize a request once, at the boundary, and check it against its model's rules
        (``batch``: against the Batch API's output cap)."""
        model = self._model if model is None else model
        if not isinstance(model, str) or not model.strip():
            raise InvalidConfigError(f"model must be a model name such as {DEFAULT_MODEL!r}, got {model!r}")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
            raise InvalidConfigError(
                f"max_tokens must be an int >= 1 (or 0 for a cache-warming request), got {max_tokens!r}"
            )
        if isinstance(messages, (str, Message)) or not isinstance(messages, Iterable):
            raise InvalidConfigError("messages must be a list of messages, e.g. [{'role': 'user', 'content': 'Hi'}]")
        params.pop("stream", None)
        api_messages = [_api_message(m) for m in messages]
        if any(type(m["content"]) is not str for m in api_messages):
            check_history(api_messages)  # tool_use/tool_result pairing: refuse before sending
        elif api_messages and api_messages[-1]["role"] == "assistant":
            check_final([to_message(api_messages[-1])])  # no trailing whitespace on a prefill
        request: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": api_messages}
        system = to_system(system)
        if system:
            request["system"] = system if isinstance(system, str) else [b.model_dump(mode="json") for b in system]
        user = params.pop("user", None) or self._user
        if user and "metadata" not in params:
            request["metadata"] = {"user_id": user}
        request.update(params)
        if max_tokens == 0 and method == "create":
            _check_warming(request)
        if method == "count_tokens":
            del request["max_tokens"]
            request.pop("metadata", None)
        check_request(request, self.catalogue.get(model), method=method, batch=batch)
        return request


def _check_warming(request: dict[str, Any]) -> None:
    """``max_tokens=0``: the API reads the prompt and writes its cache breakpoints without
    generating anything (cache warming), which thinking and structured outputs cannot do."""
    thinking = request.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type", "disabled") != "disabled":
        raise InvalidConfigError(
            "max_tokens=0 (a cache-warming request: the prompt is cached, nothing is generated) cannot be "
            "combined with thinking; leave thinking off for it"
        )
    config = request.get("output_config")
    if request.get("output_format") is not None or (isinstance(config, dict) and config.get("format") is not None):
        raise InvalidConfigError(
            "max_tokens=0 (a cache-warming request: the prompt is cached, nothing is generated) cannot be "
            "combined with structured outputs; leave the output format off for it"
        )
