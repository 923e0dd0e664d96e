"""Credentials blanked in the SDK errors convo keeps: an SDK error becomes the ``__cause__`` of
the error the caller sees, and the request it holds carries the API key in its headers."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["CREDENTIAL_HEADERS", "scrub_credentials"]

#: Request headers that hold credentials; blanked in an SDK error convo keeps as ``__cause__``.
CREDENTIAL_HEADERS = ("x-api-key", "authorization", "proxy-authorization")


def scrub_credentials(exc: BaseException | None) -> None:
    """Point an SDK error (and the httpx2 errors chained to it) at a copy of its request with the
    credentials blanked: their repr hides ``authorization``, but ``dict(exc.request.headers)``
    shows it. The request that was sent is left as it is (a transport may still hold it)."""
    seen: set[int] = set()
    copies: dict[int, Any] = {}
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        own = vars(exc)  # not getattr: httpx2's ``request`` property raises when it is unset
        response = own.get("response")
        holders = [(own, "request"), (own, "_request")]
        if response is not None and hasattr(response, "__dict__"):
            holders.append((vars(response), "_request"))
        for holder, name in holders:
            request = holder.get(name)
            if request is not None:
                if id(request) not in copies:
                    copies[id(request)] = _without_credentials(request)
                holder[name] = copies[id(request)]
        exc = exc.__cause__ or exc.__context__


def _without_credentials(request: Any) -> Any:
    headers = getattr(request, "headers", None)
    if headers is None or not any(name in headers for name in CREDENTIAL_HEADERS):
        return request
    clean = copy.copy(request)  # shallow: the same method, url and body
    clean.headers = headers.copy()
    for name in CREDENTIAL_HEADERS:
        if name in clean.headers:
            clean.headers[name] = "[redacted]"
    return clean
