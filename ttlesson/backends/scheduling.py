"""Keeping several workers busy with a queue of frames: the one scheduling loop behind every ``generate_many``
that makes frames side by side (the tt backend's chips, its per-chip processes, torch worker processes).

Each idle worker takes the next frame; finished frames come back as they finish. A frame that needs every worker
idle first (the tt backends: new step count or guidance means new device traces) waits until the running ones
are done. A worker that dies is retired: it takes no more frames, and frames nobody is left to make come back
with no worker.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

W = TypeVar("W")
R = TypeVar("R")  # one frame's request (a FrameRequest)


class WorkerGone(Exception):
    """Raised by ``start`` when the worker died while idle: its frame goes to the next worker."""


@dataclass
class Job(Generic[W]):
    worker: W | None  # None: no worker was left to make this frame
    index: int
    handle: object = None  # what ``start`` returned (a future, a submitted trace)
    started: float = 0.0
    retire: bool = False  # set by the caller when the worker died making it: it gets no more frames

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def keep_busy(items: Iterable[tuple[int, R]], workers: Iterable[W], *,
              start: Callable[[W, int, R], object],
              finished: Callable[[list[Job[W]]], list[Job[W]]],
              needs_idle: Callable[[R], bool] = lambda request: False,
              when_idle: Callable[[R], object] = lambda request: None,
              on_start: Callable[[int, W], None] | None = None) -> Iterator[Job[W]]:
    """Yield a ``Job`` per ``(index, request)`` item as its frame finishes (collect its result, then resume).

    ``start(worker, index, request)`` sends a frame to an idle worker and returns a handle (or raises
    ``WorkerGone``); ``finished(running)`` blocks until at least one running job is done and returns those.
    ``needs_idle(request)``: this frame waits for every running frame, then ``when_idle(request)`` runs first.
    """
    queue = deque(items)
    idle = deque(workers)
    running: list[Job[W]] = []
    while queue or running:
        while queue and idle:
            index, request = queue[0]
            if needs_idle(request):
                if running:
                    break
                when_idle(request)
            worker = idle.popleft()
            started = time.perf_counter()
            try:
                handle = start(worker, index, request)
            except WorkerGone:
                continue
            queue.popleft()
            if on_start is not None:
                on_start(index, worker)
            running.append(Job(worker, index, handle, started))
        if not running:
            break
        for job in finished(running):
            running.remove(job)
            yield job
            if not job.retire:
                assert job.worker is not None  # a job that ran had its worker
                idle.append(job.worker)
    for index, _ in queue:
        yield Job(None, index)
