"""Prompt caching as the API does it: breakpoints, prefix entries, TTLs and the usage they yield.

A request is read as one sequence of blocks: tools, then system blocks, then every message's
content blocks. A ``cache_control`` on a block (or the request's top-level ``cache_control``,
which marks the last block) is a *breakpoint*: the prefix up to and including that block is
written to the cache when it is at least the model's minimum cacheable length. At each
breakpoint the cache is also looked up, at that block and up to 20 blocks before it, so a
breakpoint that moved forward since the last request still finds the previous entry.

Usage then splits the request's input: ``cache_read_input_tokens`` is the longest prefix found,
``cache_creation_input_tokens`` the tokens from there to the last cacheable breakpoint (split by
TTL in ``cache_creation``), and ``input_tokens`` the rest. Entries live 5 minutes (or an hour for
``ttl: "1h"``) from their last use, measured on the simulator's injected clock.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .catalogue import catalogue
from .errors import ErrorReply, invalid
from .request import Turn
from .tokens import MESSAGE_OVERHEAD, REQUEST_OVERHEAD, TOOLS_OVERHEAD, Tokenizer

__all__ = ["CacheUsage", "PromptCache", "min_cacheable"]

MAX_BREAKPOINTS = 4
LOOKBACK = 20
TTLS = {"5m": 300.0, "1h": 3600.0}


def min_cacheable(model: str) -> int:
    """The shortest prefix the API caches for ``model`` (the catalogue's ``min_cache_tokens``)."""
    found = catalogue().find(model)
    return found.min_cache_tokens if found is not None else 1024


@dataclass(frozen=True)
class CacheUsage:
    """How one request's input tokens split between cache reads, writes and plain input."""

    input_tokens: int
    read: int = 0
    write_5m: int = 0
    write_1h: int = 0

    @property
    def creation(self) -> int:
        return self.write_5m + self.write_1h

    def fields(self) -> dict[str, Any]:
        """The usage fields, shaped like the API's."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.creation,
            "cache_read_input_tokens": self.read,
            "cache_creation": {"ephemeral_5m_input_tokens": self.write_5m, "ephemeral_1h_input_tokens": self.write_1h},
        }


@dataclass
class _Block:
    tokens: int  # prefix tokens up to and including this block
    digest: bytes  # hash of the prefix up to and including this block
    ttl: str | None = None  # set on a breakpoint


@dataclass
class Plan:
    """What a request reads and writes; :meth:`PromptCache.commit` applies it once admitted."""

    usage: CacheUsage
    refresh: list[tuple[bytes, str]] = field(default_factory=list)
    write: list[tuple[bytes, str]] = field(default_factory=list)


def _ttl(cc: Any, where: str) -> str:
    if not isinstance(cc, Mapping) or cc.get("type") != "ephemeral":
        raise invalid(f"{where}.cache_control: Input tag {cc!r} does not match the expected tag 'ephemeral'")
    extra = sorted(set(cc) - {"type", "ttl"})
    if extra:
        raise invalid(f"{where}.cache_control.{extra[0]}: Extra inputs are not permitted")
    ttl = cc.get("ttl", "5m")
    if ttl not in TTLS:
        raise invalid(f"{where}.cache_control.ttl: Input should be '5m' or '1h', got {ttl!r}")
    return str(ttl)


def _strip(obj: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in obj.items() if k != "cache_control"}, sort_keys=True, ensure_ascii=False)


class PromptCache:
    """The cache entries of one simulator: prefix digest -> (ttl, expiry)."""

    def __init__(self, counter: Tokenizer, clock: Callable[[], float]) -> None:
        self.counter = counter
        self.clock = clock
        self._entries: dict[bytes, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        now = self.clock()
        return sum(1 for _, exp in self._entries.values() if exp > now)

    def clear(self) -> None:
        self._entries.clear()

    # -- reading the request -----------------------------------------------------------------

    def _blocks(
        self,
        model: str,
        messages: Sequence[Turn],
        system: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        auto: Any,
        label: str,
    ) -> list[_Block]:
        """The request's blocks in cache order, with prefix tokens, digests and breakpoints."""
        h = hashlib.blake2b(model.encode(), digest_size=16)
        out: list[_Block] = []
        pending: list[tuple[int, str]] = []  # (block index, ttl) of breakpoints
        count = self.counter
        tokens = REQUEST_OVERHEAD + (TOOLS_OVERHEAD if tools else 0)

        def add(item: str, cost: int, cc: Any, where: str) -> None:
            nonlocal tokens
            tokens += cost
            h.update(item.encode() + b"\x1e")
            out.append(_Block(tokens, h.copy().digest()))
            if cc is not None:
                pending.append((len(out) - 1, _ttl(cc, where)))

        for i, tool in enumerate(tools or ()):
            add("t" + _strip(tool), count.count_tool(tool, label), tool.get("cache_control"), f"tools.{i}")
        for j, b in enumerate(system):
            add("s" + _strip(b), count.count_block(b, label), b.get("cache_control"), f"system.{j}")
        for i, m in enumerate(messages):
            tokens += MESSAGE_OVERHEAD
            for j, b in enumerate(m.blocks):
                where = f"messages.{i}.content.{j}"
                add(f"m{i}{m.role}" + _strip(b), count.count_block(b, label), b.get("cache_control"), where)
        if auto is not None:
            ttl = _ttl(auto, "cache_control")
            if out and not any(at == len(out) - 1 for at, _ in pending):
                pending.append((len(out) - 1, ttl))
        if len(pending) > MAX_BREAKPOINTS:
            raise ErrorReply(
                400, f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(pending)}."
            )
        seen_5m = False
        for at, ttl in sorted(pending):
            if ttl == "1h" and seen_5m:
                raise invalid("a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block")
            seen_5m = seen_5m or ttl == "5m"
            out[at].ttl = ttl
        return out

    def plan(
        self,
        model: str,
        messages: Sequence[Turn],
        *,
        system: Sequence[Mapping[str, Any]] = (),
        tools: Sequence[Mapping[str, Any]] | None = None,
        auto: Any = None,
        total: int,
        label: str = "",
    ) -> Plan:
        """Look the request up (changing nothing); raise a 400 ErrorReply for bad breakpoints."""
        blocks = self._blocks(model, messages, system, tools, auto, label)
        points = [i for i, b in enumerate(blocks) if b.ttl is not None]
        if not points:
            return Plan(CacheUsage(total))
        now, minimum = self.clock(), min_cacheable(model)
        with self._lock:
            entries = dict(self._entries)
        hit = -1
        for p in points:
            for i in range(p, max(-1, p - LOOKBACK - 1), -1):
                if i <= hit:
                    break
                entry = entries.get(blocks[i].digest)
                if entry is not None and entry[1] > now:
                    hit = i
                    break
        read = blocks[hit].tokens if hit >= 0 else 0
        plan = Plan(CacheUsage(total))
        if hit >= 0:
            plan.refresh.append((blocks[hit].digest, entries[blocks[hit].digest][0]))
        written = {"5m": 0, "1h": 0}
        upto = read
        for p in points:
            b = blocks[p]
            if p <= hit:
                entry = entries.get(b.digest)
                if entry is not None and entry[1] > now:
                    plan.refresh.append((b.digest, entry[0]))
                continue
            if b.tokens < minimum:
                continue  # too short to cache: the API processes it uncached, without an error
            assert b.ttl is not None
            written[b.ttl] += b.tokens - upto
            upto = b.tokens
            plan.write.append((b.digest, b.ttl))
        plan.usage = CacheUsage(max(0, total - upto), read, written["5m"], written["1h"])
        return plan

    def commit(self, plan: Plan) -> None:
        """Store the plan's writes and refresh its hits (after the request was admitted)."""
        now = self.clock()
        with self._lock:
            for digest, ttl in (*plan.refresh, *plan.write):
                self._entries[digest] = (ttl, now + TTLS[ttl])
            if len(self._entries) > 100_000:  # drop the expired ones now and then
                self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
