"""Requests normalized once, at the boundary: the API's shape, checked against the model's rules.

``Base`` is what the sync and async clients share beyond their settings: building a request
from ``create``'s arguments (checked by ``_preflight`` before anything is sent) and the key of
the Models API catalogue cache.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from . import _models_live
from ._exceptions import InvalidConfigError
from ._preflight import check_request
from ._settings import Settings
from .messages import Message, check_final, check_history, to_message, to_system
from .models import DEFAULT_MODEL, Catalogue

__all__ = ["Base"]


#: Message dicts already validated, by identity: a conversation sends the same dicts (it keeps
#: each message's API form) on every request, so a long history is validated once, not on every
#: turn. The dict is held with its entry (an id is never reused while cached) and with a copy
#: of what it held, so a dict changed in place since is validated again.
_VALIDATED: dict[int, tuple[Any, Any, Message, dict[str, Any]]] = {}
_VALIDATED_MAX = 100_000


def _normalized(m: Any) -> tuple[Message | None, dict[str, Any]]:
    """(the Message, its API form) of a message; plain text dicts take a fast path (no Message)."""
    if type(m) is dict:
        if len(m) == 2 and m.get("role") in ("user", "assistant"):
            content = m.get("content")
            if type(content) is str and content.strip():
                return None, {"role": m["role"], "content": content}
        hit = _VALIDATED.get(id(m))
        if hit is not None and hit[0] is m and hit[1] == m:
            return hit[2], hit[3]
        msg = to_message(m)
        api = msg.to_api()
        if len(_VALIDATED) >= _VALIDATED_MAX:
            _VALIDATED.clear()
        _VALIDATED[id(m)] = (m, copy.deepcopy(m), msg, api)
        return msg, api
    msg = m if isinstance(m, Message) else to_message(m)
    return msg, msg.to_api()


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
        normalized = [_normalized(m) for m in messages]
        api_messages = [api for _, api in normalized]
        if any(type(m["content"]) is not str for m in api_messages):
            # tool_use/tool_result pairing: refuse before sending (on the Messages made above)
            check_history([msg if msg is not None else api for msg, api in normalized])
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
