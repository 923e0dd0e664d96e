"""Progress of a long operation (map_reduce, batch): a bar for people, a callback for programs.

The bar is ``tqdm.auto``: a widget in Jupyter, text on a terminal, and nothing when stderr is
redirected elsewhere (a log file should not fill with bar frames). ``on_progress(done, total)``
is called after every finished item, whatever the bar does; ``total`` is None when the number
of items is not known up front (a generator of requests). A callback that raises is logged
(a warning on the ``convo`` logger, with the traceback) and not called again: a bug in a
progress display should not throw away a run that has been paid for.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["OnProgress", "Progress"]

log = logging.getLogger("convo")

#: ``on_progress(done, total)``: items finished so far, and how many there are (None: unknown).
OnProgress = Callable[[int, int | None], object]


def _interactive() -> bool:
    """True on a terminal, or in a Jupyter kernel (its stderr is not a terminal, but is shown)."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


class Progress:
    """Counts finished items; shows a bar when asked and someone will see it; calls ``on_progress``."""

    def __init__(self, total: int | None, *, desc: str, unit: str, bar: bool = True, leave: bool = False,
                 on_progress: OnProgress | None = None) -> None:
        if on_progress is not None and not callable(on_progress):
            from ._exceptions import InvalidConfigError

            raise InvalidConfigError(f"on_progress must be a callable (done, total), got {type(on_progress).__name__}")
        self.total = total
        self.done = 0
        self._callback = on_progress
        self._bar: Any = None
        if bar and _interactive():
            from tqdm.auto import tqdm  # type: ignore[import-untyped]

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        if n <= 0:
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        if self._callback is not None:
            try:
                self._callback(self.done, self.total)
            except Exception:
                log.warning("convo: on_progress raised; it will not be called again in this run", exc_info=True)
                self._callback = None

    def set_description(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description(text)

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=refresh)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
