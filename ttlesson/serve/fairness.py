"""The service's queue: frames served fairly across clients.

Clients take turns (round-robin): when a device is free, of the clients with a frame waiting for that device's
model, the one served longest ago (or never) gets it; a client that arrives joins ahead of those already
served. A client has at most ``cap`` frames on devices
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
        self._served: dict[str, int] = {}  # when each client last got a frame (a counter; kept while it is away)
        self._arrived: dict[str, int] = {}  # first arrival, to order clients never served
        self._clock = 0
        self.in_flight: Counter[str] = Counter()

    def put(self, client: str, item: T, *, front: bool = False) -> None:
        line = self._lines.setdefault(client, deque())
        self._arrived.setdefault(client, len(self._arrived))
        line.appendleft(item) if front else line.append(item)

    def take(self, fits: Callable[[T], bool] = lambda item: True) -> tuple[str, T] | None:
        """The next frame a free device should make (``fits``: frames it can make), or None; its client is
        marked served now and has one more frame in flight."""
        for client in self._turn():
            if self.cap is not None and self.in_flight[client] >= self.cap:
                continue
            line = self._lines[client]
            item = next((item for item in line if fits(item)), None)
            if item is None:
                continue
            line.remove(item)
            self._clock += 1
            self._served[client] = self._clock
            self.in_flight[client] += 1
            self._forget_if_idle(client)
            return client, item
        return None

    def done(self, client: str) -> None:
        """A frame taken for ``client`` finished (or failed): the client may have another in flight."""
        if self.in_flight[client] > 0:
            self.in_flight[client] -= 1
        if not self.in_flight[client]:
            self.in_flight.pop(client, None)
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
        """How many frames will be given out before this one, counting it (1: it is next), if every client keeps
        its frames waiting; None if it is not waiting. Each turn gives every client with frames one frame."""
        line = self._lines.get(client)
        if not line or item not in line:
            return None
        mine = list(line).index(item) + 1  # this frame goes out in its client's ``mine``-th turn
        order = self._turn()
        ahead = mine - 1
        for other in order:
            if other != client:
                # clients ahead of this one in the turn get ``mine`` turns first, those after it ``mine - 1``
                turns = mine if order.index(other) < order.index(client) else mine - 1
                ahead += min(len(self._lines[other]), turns)
        return ahead + 1

    def waiting(self) -> dict[str, int]:
        return {client: len(line) for client, line in self._lines.items() if line}

    def __len__(self) -> int:
        return sum(len(line) for line in self._lines.values())

    def _turn(self) -> list[str]:
        """Clients with frames waiting, the one served longest ago (or never, earliest arrival) first."""
        return sorted((client for client, line in self._lines.items() if line),
                      key=lambda client: (self._served.get(client, 0), self._arrived[client]))

    def _forget_if_idle(self, client: str) -> None:
        if not self._lines.get(client) and not self.in_flight[client]:
            self._lines.pop(client, None)
