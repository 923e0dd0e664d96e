"""The wire format: the error envelope, ids and batch bodies (requests: ``request``; the
model's rules: ``rules``; response shapes: ``events``), gathered for the HTTP layer.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

from .errors import ErrorReply, invalid

__all__ = ["Ids", "error_body", "parse_batch_create"]


def error_body(err: ErrorReply, request_id: str | None) -> dict[str, Any]:
    inner: dict[str, Any] = {"type": err.type, "message": err.message}
    if err.details is not None:
        inner["details"] = err.details
    body: dict[str, Any] = {"type": "error", "error": inner}
    if request_id is not None:
        body["request_id"] = request_id
    return body


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class Ids:
    """Ids shaped like the API's (``msg_01…``, ``req_011…``), reproducible for a seed."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"ids:{seed}")

    def new(self, prefix: str) -> str:
        rng = self._rng
        return prefix + "".join(rng.choice(_B62) for _ in range(22))

    def message(self) -> str:
        return self.new("msg_01")

    def request(self) -> str:
        return self.new("req_011")

    def batch(self) -> str:
        return self.new("msgbatch_01")


def _require(body: Mapping[str, Any], name: str) -> Any:
    if name not in body:
        raise invalid(f"{name}: Field required")
    return body[name]


_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def parse_batch_create(body: Any) -> list[tuple[str, dict[str, Any]]]:
    """Validate a batch create body; the params of each request are checked when it runs."""
    if not isinstance(body, Mapping):
        raise invalid(f"The request body must be a JSON object, got {type(body).__name__}")
    requests = _require(body, "requests")
    if not isinstance(requests, list) or not requests:
        raise invalid("requests: Input should be a non-empty list of {custom_id, params} objects")
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for i, item in enumerate(requests):
        if not isinstance(item, Mapping) or set(item) - {"custom_id", "params"}:
            raise invalid(f"requests.{i}: Input should be an object with only 'custom_id' and 'params'")
        cid, params = item.get("custom_id"), item.get("params")
        if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
            raise invalid(f"requests.{i}.custom_id: must be 1-64 characters of letters, digits, '-' or '_'")
        if cid in seen:
            raise invalid(f"requests.{i}.custom_id: {cid!r} is used twice; custom_id must be unique in a batch")
        seen.add(cid)
        if not isinstance(params, Mapping):
            raise invalid(f"requests.{i}.params: Field required")
        if params.get("stream"):
            raise invalid(f"requests.{i}.params.stream: streaming is not supported in batches")
        out.append((cid, dict(params)))
    return out


