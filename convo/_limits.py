"""A conversation's size limits: its token budget and its reply cap, checked against the model,
and a strategy's choice checked against the budget.

The budget defaults to the model's context window and the reply cap may not exceed the model's
maximum output, both from the catalogue (the client's, when it was refreshed with
``client.models()``).
"""

from __future__ import annotations

from typing import Any

from ._exceptions import InvalidConfigError, ModelRuleError
from .models import DEFAULT_MODEL, Catalogue, ModelInfo
from .strategies import Selection, TrimState

__all__ = ["check_max_tokens", "check_reply_cap", "check_selection", "model_info", "positive_int", "resolve_limits"]


def positive_int(value: Any, what: str, hint: str) -> int:
    """``value``, if it is a positive int (not a bool); else InvalidConfigError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidConfigError(f"{what} must be an int, got {type(value).__name__} {value!r}; {hint}")
    if value <= 0:
        raise InvalidConfigError(f"{what} must be positive, got {value}; {hint}")
    return value


def model_info(model: str, client: Any) -> ModelInfo | None:
    """The catalogue entry for ``model``: from the client's catalogue when it has one."""
    catalogue = getattr(client, "catalogue", None)
    if not isinstance(catalogue, Catalogue):
        catalogue = Catalogue.bundled()
    return catalogue.get(model)


def check_reply_cap(max_tokens: int, info: ModelInfo | None, model: str) -> None:
    """ModelRuleError if ``max_tokens`` is above the model's maximum output."""
    if info is not None and 0 < info.max_tokens < max_tokens:
        raise ModelRuleError(
            f"max_tokens={max_tokens} is above the maximum of {model} ({info.max_tokens} output tokens); "
            f"lower max_tokens to {info.max_tokens} or less",
            rule="max_tokens",
            model=info.id,
        )


def resolve_limits(model: str, budget: int | None, max_tokens: int | None, client: Any) -> tuple[int, int]:
    """``(budget, max_tokens)`` for a new conversation on ``model``: the given values, checked, or
    the defaults (the model's context window; 1024, or half the budget if that is less, and never
    above the model's maximum output). InvalidConfigError or ModelRuleError when they cannot be.
    """
    if not isinstance(model, str) or not model.strip():
        raise InvalidConfigError(f"model must be a model name such as {DEFAULT_MODEL!r}, got {model!r}")
    info = model_info(model, client)
    if budget is None:
        if info is None or info.max_input_tokens <= 0:
            raise InvalidConfigError(
                f"no budget given and model {model!r} is not in convo's catalogue, so its context window is "
                "unknown; pass budget=... (the tokens to fit in, e.g. budget=200_000)"
            )
        budget = info.max_input_tokens
    positive_int(budget, "budget", "give the context window to fit in, in tokens, e.g. budget=8000")
    if max_tokens is None:
        max_tokens = min(1024, max(1, budget // 2))
        if info is not None and info.max_tokens > 0:
            max_tokens = min(max_tokens, info.max_tokens)
    positive_int(max_tokens, "max_tokens", "give the default reply length, e.g. max_tokens=1024")
    check_reply_cap(max_tokens, info, model)
    return budget, max_tokens


def check_max_tokens(max_tokens: int, model: str, client: Any) -> None:
    """The checks on one request's ``max_tokens``: a positive int within the model's maximum output."""
    positive_int(max_tokens, "max_tokens", "give the longest reply you accept, e.g. max_tokens=1024")
    check_reply_cap(max_tokens, model_info(model, client), model)


def check_selection(strategy: Any, state: TrimState, selection: Selection) -> None:
    """InvalidConfigError (or the state's overflow error) unless ``strategy``'s ``selection`` keeps the
    last turn, starts its context with a user message and fits the budget."""
    if not 0 <= selection.start < state.turns:
        raise InvalidConfigError(
            f"strategy {strategy!r} chose turn {selection.start}, but there are {state.turns} turns; "
            "a strategy must keep at least the last turn"
        )
    if selection.context and selection.context[0].role != "user":
        raise InvalidConfigError("a strategy's context messages must start with a user message")
    cost = state.cost(selection)
    if cost > state.budget:
        if state.minimum() > state.budget:
            raise state.overflow()
        raise InvalidConfigError(
            f"strategy {strategy!r} chose a request of {cost} tokens, over the budget of {state.budget}"
        )
