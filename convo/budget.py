"""Spending caps: a request whose worst case would pass the cap is refused before it is sent.

>>> from convo.budget import Budget
>>> budget = Budget(usd=5.0, alerts=(0.5, 0.8), on_alert=print)

Each attempt reserves its worst case (the estimated input, plus a 25% margin for the estimate's
error, at the highest input rate, + max_tokens of output) and settles to its real cost when the response arrives. Reservations count against
the cap, so spend never exceeds it, also with many requests in flight. Alerts fire once per
fraction crossed. ``per_user_usd`` caps each user (``Client(user=...)``) as well.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ._exceptions import ConvoError, InvalidConfigError
from ._numbers import number
from ._numbers import usd as _usd

__all__ = ["Budget", "BudgetExceededError", "Hold"]


class BudgetExceededError(ConvoError):
    """The request could cost more than what is left of the budget; it was not sent."""

    def __init__(self, message: str, *, needed: float, left: float, user: str | None = None) -> None:
        super().__init__(message)
        self.needed = needed
        self.left = left
        self.user = user


@dataclass
class Hold:
    """One reservation: its worst case and the user it is charged to."""

    usd: float
    user: str | None


class Budget:
    """A USD cap shared by every request of the clients that use it (thread-safe)."""

    def __init__(
        self,
        usd: float,
        *,
        alerts: Sequence[float] = (),
        on_alert: Callable[[float, float, float], Any] | None = None,
        per_user_usd: float | None = None,
    ) -> None:
        number("Budget(usd=...)", usd, positive=True, hint=" (a positive amount in USD)")
        if isinstance(alerts, (str, bytes)) or not isinstance(alerts, Iterable):
            raise InvalidConfigError(f"alerts must be a sequence of fractions in (0, 1], got {alerts!r}")
        alerts = tuple(alerts)
        for a in alerts:
            number("each of alerts", a, positive=True)
            if a > 1:
                raise InvalidConfigError(f"alerts are fractions of the budget in (0, 1], got {alerts}")
        if per_user_usd is not None:
            number("per_user_usd", per_user_usd, positive=True, hint=" (a positive amount in USD, or None)")
        if on_alert is not None and not callable(on_alert):
            raise InvalidConfigError(f"on_alert must be callable (fraction, spent, usd), got {type(on_alert).__name__}")
        self.usd = float(usd)
        self.alerts = tuple(sorted(alerts))
        self.on_alert = on_alert
        self.per_user_usd = per_user_usd
        self._lock = threading.Lock()
        self.spent = 0.0
        self._held = 0.0
        self._user_spent: defaultdict[str | None, float] = defaultdict(float)
        self._user_held: defaultdict[str | None, float] = defaultdict(float)
        self._fired: set[float] = set()

    def __repr__(self) -> str:
        return f"Budget(usd={self.usd}, spent={self.spent:.6f})"

    @property
    def left(self) -> float:
        """USD still free: the cap less what was spent and what requests in flight hold."""
        with self._lock:
            return self.usd - self.spent - self._held

    def user_spent(self, user: str | None) -> float:
        """USD spent so far by ``user`` (None: requests without a user); holds in
        flight are not included.
        """
        with self._lock:
            return self._user_spent[user]

    def reserve(self, usd: float, user: str | None = None) -> Hold:
        """Hold ``usd`` (a worst case) or raise BudgetExceededError without holding anything."""
        with self._lock:
            left = self.usd - self.spent - self._held
            if usd > left + 1e-12:
                raise BudgetExceededError(
                    f"this request could cost up to ${usd:.6f} but only ${max(left, 0):.6f} of the "
                    f"{_usd(self.usd)} budget is left (spent ${self.spent:.6f}); raise the budget or lower max_tokens",
                    needed=usd,
                    left=left,
                    user=user,
                )
            if self.per_user_usd is not None:
                user_left = self.per_user_usd - self._user_spent[user] - self._user_held[user]
                if usd > user_left + 1e-12:
                    raise BudgetExceededError(
                        f"user {user!r} could spend up to ${usd:.6f} more but only ${max(user_left, 0):.6f} of "
                        f"their {_usd(self.per_user_usd)} cap is left",
                        needed=usd,
                        left=user_left,
                        user=user,
                    )
            self._held += usd
            self._user_held[user] += usd
            return Hold(usd, user)

    def settle(self, hold: Hold, actual: float) -> None:
        """Replace a hold by what the request really cost."""
        actual = max(actual, 0.0)
        fire: list[float] = []
        with self._lock:
            self._held -= hold.usd
            self._user_held[hold.user] -= hold.usd
            self.spent += actual
            self._user_spent[hold.user] += actual
            for fraction in self.alerts:
                if fraction not in self._fired and self.spent >= fraction * self.usd:
                    self._fired.add(fraction)
                    fire.append(fraction)
        for fraction in fire:  # outside the lock: a callback may read the budget
            if self.on_alert is not None:
                self.on_alert(fraction, self.spent, self.usd)

    def as_dict(self) -> dict[str, Any]:
        """A snapshot for logs and metrics: ``usd`` (the cap), ``spent``, ``held`` (by requests in
        flight), ``left``, and ``by_user`` (the users who have spent anything).
        """
        with self._lock:
            return {
                "usd": self.usd,
                "spent": self.spent,
                "held": self._held,
                "left": self.usd - self.spent - self._held,
                "by_user": {u: v for u, v in self._user_spent.items() if v},
            }
