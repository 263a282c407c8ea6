"""The service's queue: frames served fairly across clients.

Clients take turns (round-robin): when a device is free, the next client in turn that has a frame waiting for
that device's model gets it, then goes to the back of the turn. A client has at most ``cap`` frames on devices
at once, so one attendee's 1,000-frame walk cannot hold every device while others wait. A frame whose device
died goes back to the front of its client's line. Pure data: no threads, no Ray; the service calls it from one
event loop.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class FairQueue(Generic[T]):
    def __init__(self, cap: int | None = None):
        self.cap = cap  # frames on devices at once per client; None: no cap
        self._lines: dict[str, deque[T]] = {}  # each client's waiting frames, oldest first
        self._turn: deque[str] = deque()  # clients in the order they get their next frame
        self.in_flight: Counter[str] = Counter()

    def put(self, client: str, item: T, *, front: bool = False) -> None:
        line = self._lines.setdefault(client, deque())
        if client not in self._turn:
            self._turn.append(client)
        line.appendleft(item) if front else line.append(item)

    def take(self, fits: Callable[[T], bool] = lambda item: True) -> tuple[str, T] | None:
        """The next frame a free device should make (``fits``: frames it can make), or None; its client goes to
        the back of the turn and has one more frame in flight."""
        for client in list(self._turn):
            if self.cap is not None and self.in_flight[client] >= self.cap:
                continue
            line = self._lines.get(client, ())
            item = next((item for item in line if fits(item)), None)
            if item is None:
                continue
            line.remove(item)
            self._turn.remove(client)
            self._turn.append(client)
            self.in_flight[client] += 1
            self._forget_if_idle(client)
            return client, item
        return None

    def done(self, client: str) -> None:
        """A frame taken for ``client`` finished (or failed): the client may have another in flight."""
        if self.in_flight[client] > 0:
            self.in_flight[client] -= 1
        if not self.in_flight[client]:
            del self.in_flight[client]
        self._forget_if_idle(client)

    def cancel(self, client: str, item: T) -> bool:
        """Remove a frame still waiting (its client went away); False if it is not waiting."""
        line = self._lines.get(client)
        if not line or item not in line:
            return False
        line.remove(item)
        self._forget_if_idle(client)
        return True

    def position(self, client: str, item: T) -> int | None:
        """How many frames will be given out before this one if every client keeps its frames waiting (1: it is
        next); None if it is not waiting. Each turn gives every client with frames one frame."""
        line = self._lines.get(client)
        if not line or item not in line:
            return None
        mine = list(line).index(item) + 1  # this frame goes out in its client's ``mine``-th turn
        order = list(self._turn)
        ahead = mine - 1
        for other in order:
            if other == client:
                continue
            waiting = len(self._lines.get(other, ()))
            # clients before this one in the turn get ``mine`` turns first, those after it ``mine - 1``
            turns = mine if order.index(other) < order.index(client) else mine - 1
            ahead += min(waiting, turns)
        return ahead + 1

    def waiting(self) -> dict[str, int]:
        return {client: len(line) for client, line in self._lines.items() if line}

    def __len__(self) -> int:
        return sum(len(line) for line in self._lines.values())

    def _forget_if_idle(self, client: str) -> None:
        if not self._lines.get(client) and not self.in_flight[client]:
            self._lines.pop(client, None)
            if client in self._turn:
                self._turn.remove(client)
            self.in_flight.pop(client, None)
