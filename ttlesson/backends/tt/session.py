"""What a tt backend holds open on Tenstorrent chips, opened and closed in one place.

A ``DeviceSession`` goes unopened → open → closed, once. ``open`` runs the backend's opener with an ``ExitStack``:
whatever the opener enters there (the mesh, each trace's release, a worker pool's shutdown) is closed in reverse
order by ``close``. From the moment ``open`` starts until ``close``, SIGTERM closes the session like Ctrl-C
(``TerminationGuard``) and so does the interpreter's exit; ``close`` may run from any of these and from the
backend, in any order, and only the first does anything. An open that fails closes what it had opened and leaves
the session closed. A backend that loads again after closing starts a new session.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from enum import Enum

from .device import TerminationGuard


class SessionState(Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class DeviceSession:
    """One opening of the device: ``open`` once, ``working`` around device work, ``close`` as often as called."""

    def __init__(self) -> None:
        self.state = SessionState.UNOPENED
        self._stack = ExitStack()
        self._guard = TerminationGuard(self.close)

    @property
    def is_open(self) -> bool:
        return self.state is SessionState.OPEN

    def open(self, opener: Callable[[ExitStack], None]) -> None:
        """Run ``opener(stack)`` with SIGTERM guarded; open when it returns, closed (what it entered closed) when
        it raises."""
        if self.state is not SessionState.UNOPENED:
            raise RuntimeError(f"This device session is {self.state.value}: a session opens once; "
                               "a backend that loads again starts a new one.")
        self._guard.install()
        try:
            with self._guard.working():
                opener(self._stack)
                # Still inside working(): a SIGTERM from here on raises, and the except below closes.
                self.state = SessionState.OPEN
                atexit.register(self.close)
        except BaseException:
            self.close()
            raise

    def working(self) -> AbstractContextManager[None]:
        """A block of device work: SIGTERM in it raises ``Terminated`` in the main thread, so the paths that handle
        Ctrl-C close the session (and only whole frames stay on disk)."""
        if not self.is_open:
            raise RuntimeError(f"This device session is {self.state.value}: open it before working on the device.")
        return self._guard.working()

    def close(self) -> None:
        """Close what the opener entered, last first; once closed, closing again does nothing."""
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        self._guard.remove()  # first: a SIGTERM while the device closes no longer comes back here
        atexit.unregister(self.close)
        self._stack.close()
