"""Frames side by side in worker processes: one process per GPU, or several sharing the CPU's cores.

Each worker is its own single-process ``concurrent.futures.ProcessPoolExecutor`` (spawn start method): it loads
the model once, then makes one frame at a time and sends back the PNG bytes; the parent process writes every
frame and the manifest. One executor per worker means a worker that dies breaks only its own executor: the
frame it held is reported lost, the other workers go on with the rest, and a re-run makes the lost frame.

Frames are byte-identical to a one-process run: frame i gets the same request (prompt, seed, settings)
whichever worker makes it, the noise comes from a CPU generator, and CPU workers keep the parent's intra-op
thread count, because torch's CPU results depend on how many threads split each operation.

(Tenstorrent chips do not use this module: one process must own all of a host's chips, so the tt backend
spreads frames over its chips itself, see ``ttlesson.backends.tt``.)
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context

from ..errors import BackendUnavailableError, TTLessonError
from ..lifeline import end_with_parent, watch_parent
from ..models import ModelSpec


@dataclass(frozen=True)
class WorkerInfo:
    name: str  # "cpu#1", "cuda:0"
    device: str  # what the worker's backend reports, e.g. "cpu", "cuda:0 (NVIDIA H100)"
    pid: int
    seconds: float  # model load time


@dataclass(frozen=True)
class MadeFrame:
    index: int
    png: bytes
    device: str
    seconds: float


@dataclass(frozen=True)
class LostFrame:
    index: int
    worker: str  # the worker that died holding it; "" when no worker was left to make it


@dataclass
class _Worker:
    name: str
    torch_device: str
    executor: ProcessPoolExecutor
    pid_queue: object  # the worker process puts its pid here as it starts, before it loads anything
    info: WorkerInfo | None = None
    dead: bool = False
    holding: set[Future] = field(default_factory=set)
    _pid: int | None = None

    @property
    def pid(self) -> int | None:
        if self._pid is None and not self.pid_queue.empty():
            self._pid = self.pid_queue.get()
        return self._pid


def plan_workers(devices: int | str, device: str | None, frames: int) -> list[str]:
    """The torch device of each worker for ``devices`` ("all" or a number) and ``--device`` (None: CUDA if any).

    On the CPU, "all" is as many workers as the cores hold at the single-process thread count (each worker keeps
    that count so its frames are byte-identical): usually 1, 2 with hyper-threading. Never more workers than
    ``frames``: a worker with nothing to make would only load the model.
    """
    import torch

    kind = "cuda" if device is None and torch.cuda.is_available() else (device or "cpu")
    if kind == "cpu":
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        count = max(1, usable // torch.get_num_threads()) if devices == "all" else devices
        return ["cpu"] * min(count, frames)
    if kind != "cuda":
        raise BackendUnavailableError(f"--device {device} names one device, but --devices {devices} asks for "
                                      "several; give --device cuda (all GPUs) or --device cpu, or leave it out.")
    available = torch.cuda.device_count()
    count = available if devices == "all" else devices
    if count > available:
        raise BackendUnavailableError(f"--devices {devices} asks for more GPUs than torch sees ({available}); "
                                      f"give --devices {available} or --devices all.")
    return [f"cuda:{number}" for number in range(min(count, frames))]


def parent_torch_threads() -> int | None:
    """The intra-op thread count this process's torch uses, if torch is loaded here (workers copy it)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


class WorkerPool:
    """Worker processes, each with the model loaded on its device; use as a context manager."""

    def __init__(self, spec: ModelSpec, torch_devices: list[str], threads: int | None = None,
                 precision: str = "auto"):
        self.spec = spec
        self.threads = threads
        self.precision = precision
        context = get_context("spawn")
        cpu_count = torch_devices.count("cpu")
        self.workers = []
        for number, name in enumerate(torch_devices, start=1):
            pid_queue = context.SimpleQueue()
            executor = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_start_worker,
                                           initargs=(pid_queue, os.getpid()))
            self.workers.append(_Worker(f"cpu#{number}" if name == "cpu" and cpu_count > 1 else name, name, executor,
                                        pid_queue))

    @property
    def device(self) -> str:
        devices = sorted({worker.info.device for worker in self.workers if worker.info})
        return f"{len(self.workers)} workers on {', '.join(devices)}"

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(stop_busy=kind is not None)

    def start(self) -> list[WorkerInfo]:
        """Load the model in every worker, side by side; the first failure stops them all."""
        loads = {worker.executor.submit(_load, self.spec, worker.torch_device, self.threads, self.precision): worker
                 for worker in self.workers}
        for future, worker in loads.items():
            try:
                device, pid, seconds = future.result()
            except BrokenProcessPool:
                raise TTLessonError(f"Worker {worker.name} died while loading {self.spec.name}, probably out of "
                                    "memory; give fewer --devices.") from None
            worker.info = WorkerInfo(worker.name, device, pid, seconds)
        return [worker.info for worker in self.workers]

    def token_counts(self, texts: list[str]) -> tuple[int, list[int]]:
        """(the text encoder's limit, tokens in each text), counted by the first worker's tokenizer."""
        return self.workers[0].executor.submit(_count_tokens, texts).result()

    def run(self, items: Iterable[tuple[int, object]],
            on_start: Callable[[int, str], None] | None = None) -> Iterator[MadeFrame | LostFrame]:
        """Make the (index, FrameRequest) items, each idle worker taking the next; yield each as it finishes."""
        queue = deque(items)
        idle = deque(self.workers)
        running: dict[Future, tuple[_Worker, int]] = {}
        while queue or running:
            while queue and idle:
                worker = idle.popleft()
                index, request = queue[0]
                try:
                    future = worker.executor.submit(_make_frame, request)
                except (BrokenProcessPool, RuntimeError):  # died while idle: its next frame goes to another worker
                    worker.dead = True
                    continue
                queue.popleft()
                worker.holding.add(future)
                running[future] = (worker, index)
                if on_start is not None:
                    on_start(index, worker.name)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                worker, index = running.pop(future)
                worker.holding.discard(future)
                try:
                    png, seconds = future.result()
                except BrokenProcessPool:
                    worker.dead = True
                    yield LostFrame(index, worker.name)
                    continue
                idle.append(worker)
                yield MadeFrame(index, png, worker.info.device, seconds)
        for index, _ in queue:
            yield LostFrame(index, "")

    def close(self, stop_busy: bool = False) -> None:
        """Stop every worker; ``stop_busy`` (an error or Ctrl-C) ends them at once instead of waiting for their
        frame or model load to finish."""
        for worker in self.workers:
            if stop_busy and not worker.dead and worker.pid is not None:
                try:
                    os.kill(worker.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            worker.executor.shutdown(wait=True, cancel_futures=True)


# --- what runs inside a worker process ---------------------------------------------------------------------

_backend = None


def _start_worker(pid_queue, parent_pid: int) -> None:
    # A worker holds a whole model: it must not outlive the render that started it, even one killed with SIGKILL.
    end_with_parent(parent_pid)
    watch_parent(parent_pid)
    # Ctrl-C reaches the whole process group; the parent decides what stops (and ends busy workers itself).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pid_queue.put(os.getpid())


def _load(spec: ModelSpec, torch_device: str, threads: int | None, precision: str = "auto") -> tuple[str, int, float]:
    global _backend
    started = time.perf_counter()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from .torch import TorchBackend

    _backend = TorchBackend(spec, device=torch_device, precision=precision)
    _backend.load()
    return _backend.device, os.getpid(), time.perf_counter() - started


def _make_frame(request) -> tuple[bytes, float]:
    from ..frames import encode_png

    started = time.perf_counter()
    image = _backend.generate(request)
    return encode_png(image), time.perf_counter() - started


def _count_tokens(texts: list[str]) -> tuple[int, list[int]]:
    return _backend.max_prompt_tokens, [_backend.count_tokens(text) for text in texts]
