"""Critical sections of the package's own code, in which a SIGTERM drain must not raise (pure).

``with critical():`` around a window whose interruption would lose something — an external job submitted
but its id not yet saved, a ``step()`` result computed but not yet written. A drain that arrives inside is
*deferred*: the signal handler calls :func:`defer` and returns; when the outermost section ends, the
signal is delivered again (``os.kill(own pid, SIGTERM)``) and the drain happens at a safe point.

Process-wide (the drain is only ever raised in the task's main thread); no allocation in the handler's
path beyond setting a flag.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0
_pending = False


def active() -> bool:
    return _depth > 0


def defer() -> None:
    """Called by the signal handler: remember that a SIGTERM arrived inside a critical section."""
    global _pending
    _pending = True


def pending() -> bool:
    return _pending


def take_pending() -> bool:
    """True (once) when a deferred SIGTERM is waiting to be delivered again."""
    global _pending
    was, _pending = _pending, False
    return was


def enter() -> None:
    """Open a critical section (the start of a ``with critical():``, for callers that cannot use one)."""
    global _depth
    _depth += 1


def leave() -> None:
    """Close it; the outermost close delivers a deferred SIGTERM again."""
    global _depth
    _depth -= 1
    if _depth == 0 and take_pending():
        os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def critical() -> Iterator[None]:
    enter()
    try:
        yield
    finally:
        leave()
