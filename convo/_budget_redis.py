"""A :class:`~convo.Budget`'s books in Redis, shared by every process (see :mod:`convo._budget_store`).

:class:`RedisLedger` does each step in one Lua script on the Redis server, on the server's clock
(``TIME``), so processes on machines with skewed clocks agree on the period. A hold records its
deadline (``hold_ttl``): the hold of a process that died mid-request is given back once it
passes. The books carry an epoch: should Redis lose them (a restart without persistence), each
live process notices at its next call and puts back what it spent in the current periods, so the
cap holds for the processes still running; what processes that have exited spent is gone, so
run Redis with persistence (``appendonly yes``) for a cap that must outlive that. A store failure while reserving raises :class:`BudgetStoreError` (the request is not
sent: the budget fails closed); while settling, the settlement is kept and sent again as soon as
Redis answers (see :class:`~convo._budget_store.SharedLedger`), so a spend is never lost to an outage.

A reserve names its hold with an id chosen here, so a reserve whose answer was lost (a timeout)
is given back with the next call; a settle sent again after a lost answer is counted once.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ._budget_store import (
    HOLD_TTL,
    BudgetStoreError,
    Hold,
    Period,
    Refusal,
    SharedLedger,
    log,
    outage,
    user_key,
    user_of,
)
from ._exceptions import ConvoError, InvalidConfigError

__all__ = ["RedisLedger"]

# The ledger in Redis. ARGV[1] is the operation, ARGV[2] the key prefix of the budget, ARGV[3..4]
# the period (kind, length), ARGV[5] the epoch of the books the caller last saw ('' at first);
# every reply starts with the epoch. Per period: a hash with spent, held, s:<user>, h:<user>, f:<fraction>
# (users: "n" for none, "u" + name). Holds: a hash id -> "period|usd|user" and a sorted set of their
# deadlines. Numbers travel as strings (Lua returns integers otherwise).
_SCRIPT = """
local function fl(x) return math.floor(x) end
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = fl(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = fl((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + fl(yoe / 4) - fl(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
local function period_of(now, kind, length)
  if kind == 'day' then
    local d = fl(now / 86400)
    return 'd' .. string.format('%d', d), (d + 1) * 86400
  elseif kind == 'seconds' then
    local i = fl(now / length)
    return 's' .. ARGV[4] .. ':' .. string.format('%d', i), (i + 1) * length
  elseif kind == 'month' then
    local z = fl(now / 86400) + 719468
    local era = fl(z / 146097)
    local doe = z - era * 146097
    local yoe = fl((doe - fl(doe / 1460) + fl(doe / 36524) - fl(doe / 146096)) / 365)
    local y = yoe + era * 400
    local doy = doe - (365 * yoe + fl(yoe / 4) - fl(yoe / 100))
    local mp = fl((5 * doy + 2) / 153)
    local m = mp < 10 and mp + 3 or mp - 9
    if m <= 2 then y = y + 1 end
    local ny, nm = y, m + 1
    if nm > 12 then ny, nm = y + 1, 1 end
    return string.format('m%04d-%02d', y, m), days_from_civil(ny, nm, 1) * 86400
  end
  return 'all', -1
end
local op, P, kind, length = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if op == 'period' then
  local pid, ends = period_of(tonumber(ARGV[6]), kind, length)
  return {'', pid, tostring(ends)}
end
-- The books' epoch: made when they are first written. A caller that saw another epoch is told
-- the books were lost (a Redis restart without persistence) and puts back its own spend first.
local epoch = redis.call('GET', P .. 'epoch')
if not epoch then
  epoch = string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
  redis.call('SET', P .. 'epoch', epoch)
end
if ARGV[5] ~= '' and ARGV[5] ~= epoch then return {epoch, 'wiped'} end
if op == 'restore' then
  for i = 6, #ARGV, 3 do
    local rkey = P .. 'p:' .. ARGV[i]
    redis.call('HINCRBYFLOAT', rkey, 'spent', tonumber(ARGV[i + 2]))
    redis.call('HINCRBYFLOAT', rkey, 's:' .. ARGV[i + 1], tonumber(ARGV[i + 2]))
    if ARGV[i] ~= 'all' then redis.call('PEXPIRE', rkey, 70 * 86400 * 1000) end
  end
  return {epoch, 'ok'}
end
local holds, deadlines = P .. 'holds', P .. 'deadlines'
local function release(id)
  local rec = redis.call('HGET', holds, id)
  if not rec then return nil end
  local pid, usd, user = string.match(rec, '^([^|]*)|([^|]*)|(.*)$')
  local key = P .. 'p:' .. pid
  if redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBYFLOAT', key, 'held', -tonumber(usd))
    redis.call('HINCRBYFLOAT', key, 'h:' .. user, -tonumber(usd))
  end
  redis.call('HDEL', holds, id)
  redis.call('ZREM', deadlines, id)
  return pid, user
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', deadlines, '-inf', now)) do release(id) end
if op == 'release' then  -- holds whose reserve got no answer: taken or not, they are given back
  for i = 6, #ARGV do release(ARGV[i]) end
  return {epoch, 'ok'}
end
local pid, ends = period_of(now, kind, length)
local key = P .. 'p:' .. pid
local function num(field) return tonumber(redis.call('HGET', key, field) or '0') or 0 end
local function keep()
  if ends > 0 then redis.call('PEXPIREAT', key, math.ceil((ends + 35 * 86400) * 1000)) end
end
if op == 'reserve' then
  local usd, user, cap, per_user, ttl = tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
  local spent, held = num('spent'), num('held')
  local left = cap - spent - held
  if usd > left + 1e-12 then return {epoch, 'cap', tostring(left), tostring(spent)} end
  if per_user >= 0 then
    local us = num('s:' .. user)
    local user_left = per_user - us - num('h:' .. user)
    if usd > user_left + 1e-12 then return {epoch, 'user', tostring(user_left), tostring(us)} end
  end
  redis.call('HINCRBYFLOAT', key, 'held', usd)
  redis.call('HINCRBYFLOAT', key, 'h:' .. user, usd)
  keep()
  local id = ARGV[11]
  redis.call('HSET', holds, id, pid .. '|' .. ARGV[6] .. '|' .. user)
  redis.call('ZADD', deadlines, now + ttl, id)
  return {epoch, 'ok', id, pid}
elseif op == 'settle' then
  local id, actual, cap = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
  local hpid, huser = release(id)
  hpid, huser = hpid or ARGV[9], huser or ARGV[10]
  local hkey = P .. 'p:' .. hpid
  -- A settle sent again (its first answer was lost) is not counted twice: settled ids are kept a day.
  local settled = P .. 'settled'
  redis.call('ZREMRANGEBYSCORE', settled, '-inf', now - 86400)
  if id ~= '' and redis.call('ZSCORE', settled, id) then
    return {epoch, hpid, tostring(tonumber(redis.call('HGET', hkey, 'spent') or '0'))}
  end
  if id ~= '' then redis.call('ZADD', settled, now, id) end
  redis.call('HINCRBYFLOAT', hkey, 'spent', actual)
  redis.call('HINCRBYFLOAT', hkey, 's:' .. huser, actual)
  if hpid == pid then keep() elseif hpid ~= 'all' then redis.call('PEXPIRE', hkey, 35 * 86400 * 1000) end
  local spent = tonumber(redis.call('HGET', hkey, 'spent'))
  local out = {epoch, hpid, tostring(spent)}
  for i = 11, #ARGV do
    if spent >= tonumber(ARGV[i]) * cap and redis.call('HSETNX', hkey, 'f:' .. ARGV[i], '1') == 1 then
      out[#out + 1] = ARGV[i]
    end
  end
  return out
end
local out = {epoch, pid, tostring(ends)}
for _, v in ipairs(redis.call('HGETALL', key)) do out[#out + 1] = v end
return out
"""


class RedisLedger(SharedLedger):
    """The books of a budget in Redis, shared by every process with the same store and ``name``."""

    def __init__(self, store: Any, name: str, period: Period, hold_ttl: float = HOLD_TTL) -> None:
        if not isinstance(name, str) or not name or "|" in name:
            raise InvalidConfigError(f"a shared budget's name must be a non-empty string without '|', got {name!r}")
        if isinstance(hold_ttl, bool) or not isinstance(hold_ttl, (int, float)) or hold_ttl <= 0:
            raise InvalidConfigError(f"hold_ttl must be a positive number of seconds, got {hold_ttl!r}")
        super().__init__()
        self.store = store
        self.name = name
        self.period = period
        self.hold_ttl = float(hold_ttl)
        self.prefix = f"{store.prefix}budget:{name}:"
        self._script = store.register(_SCRIPT)
        self._orphans: list[str] = []  # ids of holds a failed reserve may have taken
        # What this process has settled, by period and user, to put back should the books be lost.
        self._mine: dict[str, defaultdict[str, float]] = {}
        self._epoch = ""

    def __repr__(self) -> str:
        return f"RedisLedger({self.store!r}, name={self.name!r})"

    def _call(self, what: str, epoch: str, args: Sequence[Any]) -> list[str]:
        argv = [what, self.prefix, self.period.kind, f"{self.period.length:g}", epoch, *args]
        try:
            out = self.store.run_script(self._script, argv)
        except ConvoError as exc:  # the store's own typed error: say it was the budget's books
            raise BudgetStoreError(
                f"the budget {self.name!r} could not reach its store {self.store!r} ({exc}); {outage(what)}: "
                "check that redis-server is running",
                store=repr(self.store),
            ) from None
        return [v.decode() if isinstance(v, bytes) else str(v) for v in out]

    def _run(self, what: str, *args: Any) -> list[str]:
        """One operation on the books (the reply without its epoch). Books that were lost since
        this process last saw them (Redis restarted empty) first get this process's spend back."""
        for _ in range(3):
            out = self._call(what, self._epoch, args)
            if out[1:2] != ["wiped"]:
                if not self._epoch and out[0]:
                    self._epoch = out[0]
                return out[1:]
            self._restore(out[0])
        raise BudgetStoreError(f"the books of budget {self.name!r} in {self.store!r} keep being reset", store=repr(self.store))

    def _restore(self, epoch: str) -> None:
        with self._lock:
            rows = [(pid, user, amount) for pid, users in self._mine.items() for user, amount in users.items() if amount]
        log.warning("convo: the shared budget %r was lost from its store (a restart?); putting back this process's "
                    "spend of $%.6f", self.name, sum(a for _, _, a in rows))
        out = self._call("restore", epoch, [v for row in rows for v in (row[0], row[1], repr(row[2]))])
        if out[1:2] != ["wiped"]:
            self._epoch = epoch

    def _flush(self) -> None:
        """Give back holds whose reserve got no answer, then send settlements an outage held
        back (oldest first; stop at the first failure)."""
        if self._orphans:
            with self._lock:
                orphans = list(self._orphans)
            self._run("release", *orphans)
            with self._lock:
                del self._orphans[: len(orphans)]
        super()._flush()

    def reserve(self, usd: float, user: str | None, cap: float, per_user: float | None) -> Hold | Refusal:
        self._flush()
        id = secrets.token_hex(8)  # chosen here, so a reserve whose answer was lost can be given back
        try:
            out = self._run(
                "reserve", repr(float(usd)), user_key(user), repr(float(cap)),
                "-1" if per_user is None else repr(float(per_user)), repr(self.hold_ttl), id,
            )
        except BudgetStoreError:
            with self._lock:
                self._orphans.append(id)
            raise
        if out[0] != "ok":
            return Refusal(out[0], float(out[1]), float(out[2]))
        return Hold(usd, user, out[1], out[2])

    def _settle(self, hold: Hold, actual: float, cap: float, alerts: Sequence[float]) -> tuple[list[float], float]:
        out = self._run(
            "settle", hold.id or "", repr(float(actual)), repr(float(cap)), hold.period or "", user_key(hold.user),
            *(repr(float(a)) for a in alerts),
        )
        with self._lock:
            if out[0] not in self._mine:
                if len(self._mine) >= 3:  # only the latest periods can matter
                    self._mine.pop(next(iter(self._mine)))
                self._mine[out[0]] = defaultdict(float)
            self._mine[out[0]][user_key(hold.user)] += actual
        return [float(f) for f in out[2:]], float(out[1])

    def snapshot(self) -> dict[str, Any]:
        self._flush()
        out = self._run("read")
        fields = dict(zip(out[2::2], out[3::2]))
        ends = float(out[1])
        return {
            "spent": float(fields.get("spent", 0.0)),
            "held": max(0.0, float(fields.get("held", 0.0))),
            "by_user": {user_of(k[2:]): float(v) for k, v in fields.items() if k.startswith("s:") and float(v)},
            "period": out[0],
            "resets_at": None if ends < 0 else ends,
        }

    def period_at(self, now: float) -> tuple[str, float | None]:
        """The period id and end the Lua script computes for ``now`` (to check it against Python's)."""
        out = self._run("period", repr(float(now)))
        ends = float(out[1])
        return out[0], None if ends < 0 else ends
