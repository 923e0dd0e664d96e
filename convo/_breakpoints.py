"""Where a conversation puts its prompt-cache breakpoints (``Conversation(prompt_cache=True)``).

Up to four, in this order of value: the newest message (written now, read by the next turn),
the system prompt (or the last tool when there is no system prompt: it survives every cut of
the window), the summary (it survives until the next fold), and the end of what the previous
request sent (read now; the API's 20-block look-back usually finds it anyway, so it goes
first when there is no room). Breakpoints the caller placed count toward the four.
"""

from __future__ import annotations

from typing import Any

from .models import ModelInfo

__all__ = ["marks_in", "place", "ttl"]

MAX = 4
_NO_CACHE = frozenset({"thinking", "redacted_thinking"})


def _marked(block: Any) -> bool:
    return isinstance(block, dict) and "cache_control" in block


def _count_existing(request: dict[str, Any]) -> int:
    n = sum(1 for t in request.get("tools") or () if _marked(t))
    system = request.get("system")
    if isinstance(system, list):
        n += sum(1 for b in system if _marked(b))
    for m in request["messages"]:
        if isinstance(m.get("content"), list):
            n += sum(1 for b in m["content"] if _marked(b))
    return n + (1 if request.get("cache_control") else 0)


def ttl(setting: str | bool | None, client: Any, info: ModelInfo | None, estimate: float) -> str:
    """The TTL of a request's breakpoints, or "" for none. ``setting`` is the conversation's
    ``prompt_cache``: a TTL always marks; None marks when the conversation has a client, its
    model is known (so is its minimum cacheable length) and the request's ``estimate`` (input
    tokens, as the server counts them) reaches that minimum; False never marks."""
    if isinstance(setting, str):
        return setting
    if setting is False or client is None or info is None or info.min_cache_tokens <= 0:
        return ""
    return "5m" if estimate >= info.min_cache_tokens else ""


def marks_in(message: dict[str, Any]) -> int:
    """The ``cache_control`` markers one API message dict carries."""
    return _count_existing({"messages": [message]})


def _mark_message(message: dict[str, Any], cc: dict[str, Any]) -> bool:
    content = message["content"]
    if isinstance(content, str):
        message["content"] = [{"type": "text", "text": content, "cache_control": cc}]
        return True
    blocks = list(content)
    for i in range(len(blocks) - 1, -1, -1):
        if blocks[i].get("type") in _NO_CACHE:
            continue
        if not _marked(blocks[i]):
            blocks[i] = {**blocks[i], "cache_control": cc}
            message["content"] = blocks
        return True
    return False


def place(request: dict[str, Any], *, summary: bool, ttl: str = "5m", existing: int | None = None) -> list[str]:
    """Add ``cache_control`` to ``request`` (a messages.create kwargs dict, changed in place;
    the message dicts it marks are replaced by copies, never changed); returns where they went:
    ``"system"``, ``"tools[i]"``, ``"messages[i]"``. ``existing``, when the caller knows it, is
    how many markers the messages already carry (it saves walking them all)."""
    cc: dict[str, Any] = {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}
    messages = request["messages"]
    if existing is None:
        room = MAX - _count_existing(request)
    else:
        room = MAX - existing - _count_existing({**request, "messages": ()})
    wanted: list[tuple[str, int]] = [("message", len(messages) - 1)]
    if request.get("system"):
        wanted.append(("system", 0))
    elif request.get("tools"):
        wanted.append(("tool", len(request["tools"]) - 1))
    if summary:
        wanted.append(("message", 0))
    last_reply = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "assistant"), -1)
    if last_reply >= 1:
        wanted.append(("message", last_reply - 1))
    placed: list[str] = []
    seen: set[tuple[str, int]] = set()
    for kind, at in wanted:
        if room <= 0:
            break
        if (kind, at) in seen:
            continue
        seen.add((kind, at))
        if kind == "system":
            system = request["system"]
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": system}] if isinstance(system, str) else [dict(b) for b in system]
            )
            if not _marked(blocks[-1]):
                blocks[-1]["cache_control"] = cc
                request["system"] = blocks
                room -= 1
            placed.append("system")
        elif kind == "tool":
            tools = [dict(t) for t in request["tools"]]
            if not _marked(tools[-1]):
                tools[-1]["cache_control"] = cc
                request["tools"] = tools
                room -= 1
            placed.append(f"tools[{at}]")
        else:
            messages[at] = dict(messages[at])
            before = _count_existing({"messages": [messages[at]]})
            if _mark_message(messages[at], cc):
                room -= _count_existing({"messages": [messages[at]]}) - before
                placed.append(f"messages[{at}]")
    return sorted(placed, key=_order)


def _order(where: str) -> tuple[int, int]:
    if where.startswith("tools"):
        return (0, int(where[6:-1]))
    if where == "system":
        return (1, 0)
    return (2, int(where[9:-1]))
