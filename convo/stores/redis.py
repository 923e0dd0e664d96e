"""Conversations in Redis, shared by every process that uses the same URL and prefix.

Per conversation: a hash (owner, metadata, times, version, header, pins, summary) and three
lists (message chunks, one per write; their token counts; receipts); per owner, and for all, a
sorted set of ids (equal scores, so ``list`` pages by id with ``ZREVRANGEBYLEX``). A turn is one
Lua script, which checks the version and appends (``RPUSH``); opening is one ``MULTI`` of
``HGETALL`` and three ``LRANGE`` — one round trip each.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from .._exceptions import InvalidConfigError, StoreError
from .._numbers import number
from .._redis_url import hide_password, scrub, secrets_in
from .._sockets import redis_options
from ._base import StoreBase
from ._records import RECENT_CHARS, ConversationInfo, Stored, Write, conflict, when

__all__ = ["RedisConversationStore"]

_FIELDS = ("owner", "metadata", "created", "updated", "length", "version")

# KEYS: hash, chunks, receipts, chunks' token counts. ARGV: version, chunks kept, chunks stored,
# updated, pins, summary ('' = none), head ('' = unchanged), receipt_start, chunk count n, the
# write's token (kept in 'last' before the tokens of the writes before it), the length after it,
# the time to live in ms (0: none), then n chunks, n counts, and the receipts.
_APPEND = """
local v = redis.call('HGET', KEYS[1], 'version')
if not v then return {2, 0} end
v = tonumber(v)
if v ~= tonumber(ARGV[1]) then
  -- This very write, sent again (a reply lost, then a resend): applied, not a conflict.
  local last = redis.call('HGET', KEYS[1], 'last') or ''
  if string.find(',' .. last .. ',', ',' .. ARGV[10] .. ',', 1, true) then return {0, tonumber(ARGV[1]) + 1} end
  return {1, v}
end
local keep, stored, n = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[9])
if keep < stored then
  if keep == 0 then
    redis.call('DEL', KEYS[2], KEYS[4])
  else
    redis.call('LTRIM', KEYS[2], 0, keep - 1)
    redis.call('LTRIM', KEYS[4], 0, keep - 1)
  end
end
local function push(key, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    redis.call('RPUSH', key, unpack(ARGV, i, j))
    i = j + 1
  end
end
push(KEYS[2], 13, 12 + n)
push(KEYS[4], 13 + n, 12 + 2 * n)
local rs = tonumber(ARGV[8])
if #ARGV > 12 + 2 * n then
  local have = redis.call('LLEN', KEYS[3])
  if have > rs then
    if rs == 0 then redis.call('DEL', KEYS[3]) else redis.call('LTRIM', KEYS[3], 0, rs - 1) end
  end
  push(KEYS[3], 13 + 2 * n, #ARGV)
end
local recent = redis.call('HGET', KEYS[1], 'last')
recent = (recent and recent ~= '') and string.sub(ARGV[10] .. ',' .. recent, 1, RECENT_CHARS) or ARGV[10]
redis.call('HSET', KEYS[1], 'version', v + 1, 'updated', ARGV[4], 'length', ARGV[11], 'pins', ARGV[5], 'last', recent)
if ARGV[6] == '' then redis.call('HDEL', KEYS[1], 'summary') else redis.call('HSET', KEYS[1], 'summary', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'head', ARGV[7]) end
local ttl = tonumber(ARGV[12])
if ttl > 0 then for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end end
return {0, v + 1}
""".replace("RECENT_CHARS", str(RECENT_CHARS))

# KEYS: hash, chunks, receipts, token counts. ARGV: metadata, updated, time to live in ms (0: none).
# Only an existing conversation (HSET would create a stub).
_SET_METADATA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'metadata', ARGV[1], 'updated', ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end end
return 1
"""

# KEYS: hash, chunks, receipts, token counts, the all-index. ARGV: id, the per-owner index prefix.
_DELETE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
local gone = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
if owner and owner ~= '' then redis.call('ZREM', ARGV[2] .. owner, ARGV[1]) end
return gone
"""


def _unindex(index: str, ids: list[str], r: Any) -> Any:
    return r.zrem(index, *ids)


def _page(index: str, after: str, r: Any) -> Any:
    return r.zrangebylex(index, after, "+", start=0, num=500)


def _updated(hashes: list[str], r: Any) -> Any:
    pipe = r.pipeline(transaction=False)
    for key in hashes:
        pipe.hget(key, "updated")
    return pipe.execute()


def _info(id: str, h: Any) -> ConversationInfo:
    owner, metadata, created, updated, length, version = h
    return ConversationInfo(
        id, owner or None, json.loads(metadata), when(float(created)), when(float(updated)), int(length), int(version)
    )


class RedisConversationStore(StoreBase):
    """Conversations in Redis at ``url`` (``redis://[user:password@]host:port/db``), keys under
    ``prefix``. Needs the redis package (``pip install 'convo[redis]'``); the URL's password never
    appears in an error or repr.

    ``ttl``: seconds after its last write (a turn, an edit, new metadata) at which a conversation
    expires, all its keys at once; ``None`` keeps conversations until deleted. An expired
    conversation is gone as if deleted: ``open`` does not find it, ``list`` leaves it out, and a
    handle still holding it gets :class:`~convo.ConflictError` at its next write.
    """

    kind = "Redis conversation store"

    def __init__(self, url: str, *, prefix: str = "convo:", timeout: float = 5.0, ttl: float | None = None) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - redis is a declared extra
            raise InvalidConfigError("RedisConversationStore needs the redis package: pip install 'convo[redis]'") from None
        if not isinstance(url, str):
            raise InvalidConfigError(f"url must be a str such as 'redis://localhost:6379/0', got {type(url).__name__}")
        number("timeout", timeout, positive=True, hint=" (seconds)")
        if ttl is not None:
            number("ttl", ttl, positive=True, hint=" (seconds; None: never expire)")
        self.url = hide_password(url)
        self.prefix = prefix
        self.ttl = None if ttl is None else float(ttl)
        self._ttl_ms = 0 if ttl is None else max(1, round(ttl * 1000))
        self._errors = (redis.RedisError, OSError)
        self._secrets = secrets_in(url)
        problem = None
        try:
            # No retries of the client's own: a write is never sent twice behind the journal's
            # back (it settles a write in doubt itself).
            self._redis = redis.Redis.from_url(url, decode_responses=True, **redis_options(timeout))
        except (ValueError, TypeError) as exc:
            problem = self._scrub(str(exc))
        if problem is not None:  # raised out here, so the original error (and URL) is not chained
            raise InvalidConfigError(f"invalid Redis URL {self.url!r}: {problem}; use redis://[user:password@]host:port/db")
        self._append_script = self._redis.register_script(_APPEND)
        self._delete_script = self._redis.register_script(_DELETE)
        self._metadata_script = self._redis.register_script(_SET_METADATA)
        self._call("ping", lambda r: r.ping())

    def __repr__(self) -> str:
        ttl = "" if self.ttl is None else f", ttl={self.ttl:g}"
        return f"RedisConversationStore({self.url!r}, prefix={self.prefix!r}{ttl})"

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        try:
            return fn(self._redis)
        except self._errors as exc:
            problem = f"{type(exc).__name__}: {self._scrub(str(exc))}"
        raise StoreError(
            f"{self.kind} at {self.url!r} failed ({what}): {problem}; check that redis-server is running and the URL is right",
            store=f"{self.kind} at {self.url!r}",
        )

    def _keys(self, id: str) -> list[str]:
        p = self.prefix
        return [f"{p}c:{id}", f"{p}k:{id}", f"{p}r:{id}", f"{p}n:{id}"]

    def _index(self, user: str | None) -> str:
        return f"{self.prefix}all" if user is None else f"{self.prefix}u:{user}"

    # -- the backend primitives ------------------------------------------------------------------

    def _insert(self, info: ConversationInfo, head: str, pins: str) -> None:
        created = repr(info.created.timestamp())
        fields = {"owner": info.user or "", "metadata": json.dumps(info.metadata), "created": created,
                  "updated": created, "length": 0, "version": 1, "head": head, "pins": pins}

        def insert(r: Any) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.hset(self._keys(info.id)[0], mapping=fields)
            if self._ttl_ms:
                pipe.pexpire(self._keys(info.id)[0], self._ttl_ms)
            pipe.zadd(self._index(None), {info.id: 0})
            if info.user is not None:
                pipe.zadd(self._index(info.user), {info.id: 0})
            pipe.execute()

        self._call("create", insert)

    def _append(self, id: str, write: Write) -> int:
        args: list[str | int | float] = [
            write.version, write.kept_chunks, write.stored_chunks, repr(write.updated), write.pins, write.summary or "",
            write.head or "", write.receipt_start, len(write.chunks), write.token, write.length, self._ttl_ms, *write.chunks,
            *write.counts, *write.receipts,
        ]
        status, version = self._call("append", lambda r: self._append_script(keys=self._keys(id), args=args))
        if status != 0:
            raise conflict(self.kind, id, write.version, None if status == 2 else int(version))
        return int(version)

    def _set_metadata(self, id: str, metadata: str, updated: float) -> bool:
        keys, args = self._keys(id), [metadata, repr(updated), str(self._ttl_ms)]
        return bool(self._call("set metadata", lambda r: self._metadata_script(keys=keys, args=args)))

    def _last_write(self, id: str) -> tuple[int, str] | None:
        version, token = self._call("check the last write", lambda r: r.hmget(self._keys(id)[0], ("version", "last")))
        return None if version is None else (int(version), token or "")

    def _read(self, id: str, messages: bool = True) -> Stored | None:
        hash_key, chunks_key, receipts_key, counts_key = self._keys(id)
        if not messages:
            h = self._call("info", lambda r: r.hmget(hash_key, _FIELDS))
            return None if h[-1] is None else Stored(_info(id, h), "", "[]", None, [], [])

        def read(r: Any) -> Any:
            pipe = r.pipeline(transaction=True)
            pipe.hgetall(hash_key)
            pipe.lrange(chunks_key, 0, -1)
            pipe.lrange(receipts_key, 0, -1)
            pipe.lrange(counts_key, 0, -1)
            return pipe.execute()

        h, chunks, receipts, counts = self._call("open", read)
        if not h:
            return None
        info = _info(id, [h[f] for f in _FIELDS])
        return Stored(info, h["head"], h["pins"], h.get("summary"), chunks, receipts, counts)

    def _list(self, user: str | None, limit: int, after: str | None) -> list[ConversationInfo]:
        index, out = self._index(user), list[ConversationInfo]()
        while len(out) < limit:  # ids whose conversation expired are dropped: read on to fill the page
            want = limit - len(out)
            ids, rows = self._call("list", functools.partial(self._page, index, after, want))
            gone = [id for id, h in zip(ids, rows) if h[-1] is None]  # expired (or deleted meanwhile)
            if gone:
                self._call("list", functools.partial(_unindex, index, gone))
            out += [_info(id, h) for id, h in zip(ids, rows) if h[-1] is not None]
            if len(ids) < want:  # the index has no more
                break
            after = ids[-1]
        return out

    def _page(self, index: str, after: str | None, limit: int, r: Any) -> Any:
        ids = r.zrevrangebylex(index, "+" if after is None else f"({after}", "-", start=0, num=limit)
        pipe = r.pipeline(transaction=False)
        for id in ids:
            pipe.hmget(self._keys(id)[0], _FIELDS)
        return ids, pipe.execute()

    def _delete(self, id: str) -> bool:
        keys = [*self._keys(id), self._index(None)]
        gone = self._call("delete", lambda r: self._delete_script(keys=keys, args=[id, f"{self.prefix}u:"]))
        return bool(gone)

    def _delete_user(self, user: str) -> int:
        index = self._index(user)
        gone = 0
        while True:  # until the index is empty: a conversation created meanwhile goes too
            ids: list[str] = self._call("delete_user", lambda r: r.zrange(index, 0, 499))
            if not ids:
                return gone
            for id in ids:
                gone += self._delete(id)
            self._call("delete_user", functools.partial(_unindex, index, ids))

    def _delete_idle(self, before: float) -> int:
        index, gone, after = self._index(None), 0, "-"
        while True:  # a page of ids at a time, in id order; a deleted id is not read again
            ids: list[str] = self._call("delete_idle", functools.partial(_page, index, after))
            if not ids:
                return gone
            times = self._call("delete_idle", functools.partial(_updated, [self._keys(id)[0] for id in ids]))
            for id, updated in zip(ids, times):
                if updated is None or float(updated) < before:  # idle, or expired (then only unindexed)
                    gone += self._delete(id)
            after = f"({ids[-1]}"

    def close(self) -> None:
        """Close the connections to Redis."""
        self._redis.close()
