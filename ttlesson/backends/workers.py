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

import atexit
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from typing import TYPE_CHECKING, cast

from ..child_processes import end_with_parent, watch_parent
from ..errors import BackendUnavailableError, TTLessonError
from ..models import ModelSpec
from .base import Backend, LostFrame, MadeImage
from .scheduling import Job, WorkerGone, keep_busy

if TYPE_CHECKING:
    from multiprocessing.queues import SimpleQueue

    from .torch import TorchBackend


@dataclass(frozen=True)
class WorkerInfo:
    name: str  # "cpu#1", "cuda:0"
    device: str  # what the worker's backend reports, e.g. "cpu", "cuda:0 (NVIDIA H100)"
    pid: int
    seconds: float  # model load time


@dataclass
class _Worker:
    name: str
    torch_device: str
    executor: ProcessPoolExecutor
    pid_queue: SimpleQueue[int]  # the worker process puts its pid here as it starts, before it loads anything
    info: WorkerInfo | None = None
    dead: bool = False
    busy: bool = False  # loading the model or making a frame
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
        count = max(1, usable // torch.get_num_threads()) if devices == "all" else cast(int, devices)
        return ["cpu"] * min(count, frames)
    if kind != "cuda":
        raise BackendUnavailableError(f"--device {device} names one device, but --devices {devices} asks for "
                                      "several; give --device cuda (all GPUs) or --device cpu, or leave it out.")
    available = torch.cuda.device_count()
    count = available if devices == "all" else cast(int, devices)
    if count > available:
        raise BackendUnavailableError(f"--devices {devices} asks for more GPUs than torch sees ({available}); "
                                      f"give --devices {available} or --devices all.")
    return [f"cuda:{number}" for number in range(min(count, frames))]


def parent_torch_threads() -> int | None:
    """The intra-op thread count this process's torch uses, if torch is loaded here (workers copy it)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


class WorkerPool(Backend):
    """The torch backend in worker processes, one per GPU or several sharing the CPU: a ``Backend`` whose
    ``generate_many`` makes frames side by side (``parallel`` at once) and yields ``MadeImage`` (PNG bytes) or,
    for a frame whose worker died, ``LostFrame``."""

    name = "torch"
    reports_steps = False

    def __init__(self, spec: ModelSpec, devices: int | str, device: str | None = None, precision: str = "auto",
                 size: tuple[int, int] | None = None):
        super().__init__(spec)
        self.devices, self.torch_device, self._precision = devices, device, precision
        self.size = size or (spec.width, spec.height)
        self.torch_devices: list[str] = []
        self._workers: list[_Worker] = []
        self._token_limit = 77

    @property
    def precision(self) -> str:  # as asked: each worker settles it when it loads
        return self._precision

    def for_frames(self, count: int) -> Backend:
        """Plan the workers for ``count`` frames (never more workers than frames) and check they fit in memory; a
        single worker is the plain torch backend in this process."""
        from .torch import TorchBackend
        from .torch.memory import check_fits

        self.torch_devices = plan_workers(self.devices, self.torch_device, count)
        check_fits(self.spec, *self.size, self.torch_device, copies=self.torch_devices.count("cpu"))
        if len(self.torch_devices) == 1:
            return TorchBackend(self.spec, device=self.torch_devices[0], precision=self.precision)
        return self

    @property
    def device(self) -> str:
        devices = sorted({worker.info.device for worker in self._workers if worker.info})
        return f"{len(self._workers)} workers on {', '.join(devices)}"

    @property
    def parallel(self) -> int:
        return max(1, len(self.torch_devices))

    @property
    def progress_note(self) -> str:
        return f"progress is per frame: {len(self.torch_devices)} worker processes make frames side by side"

    @property
    def started_workers(self) -> tuple[WorkerInfo, ...]:
        return tuple(worker.info for worker in self._workers if worker.info)

    def load(self) -> None:
        """Start the workers and load the model in each, side by side; the first failure stops them all."""
        if self._workers:
            return
        if not self.torch_devices:
            raise RuntimeError("WorkerPool.for_frames(count) plans the workers before load")
        context = get_context("spawn")
        cpu_count = self.torch_devices.count("cpu")
        threads = parent_torch_threads()
        for number, name in enumerate(self.torch_devices, start=1):
            pid_queue = context.SimpleQueue()
            executor = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_start_worker,
                                           initargs=(pid_queue, os.getpid()))
            self._workers.append(_Worker(f"cpu#{number}" if name == "cpu" and cpu_count > 1 else name, name,
                                         executor, pid_queue))
        with _ctrl_c_held():  # the first submit starts each worker process
            loads = {worker.executor.submit(_load, self.spec, worker.torch_device, threads, self.precision): worker
                     for worker in self._workers}
        for worker in self._workers:
            worker.busy = True
        for future, worker in loads.items():
            if _died_or_stopped(future):
                raise TTLessonError(f"Worker {worker.name} died while loading {self.spec.name}, probably out of "
                                    "memory; give fewer --devices.") from future.exception()
            device, pid, seconds = future.result()
            worker.info, worker.busy = WorkerInfo(worker.name, device, pid, seconds), False
        self._token_limit, _ = self._workers[0].executor.submit(_count_tokens, []).result()

    def generate(self, request, on_step=None):
        raise NotImplementedError("a worker pool makes frames with generate_many")

    def generate_many(self, items: Iterable[tuple[int, object]], on_start: Callable[[int, str], None] | None = None,
                      on_step=None) -> Iterator[MadeImage | LostFrame]:
        """Make the (index, FrameRequest) items, each idle worker taking the next; yield each as it finishes."""

        def start(worker: _Worker, index: int, request) -> Future:
            try:
                future = worker.executor.submit(_make_frame, request)
            except (BrokenProcessPool, RuntimeError):  # died while idle: its next frame goes to another worker
                worker.dead = True
                raise WorkerGone from None
            worker.busy = True
            return future

        def finished(running: list[Job[_Worker]]) -> list[Job[_Worker]]:
            done, _ = wait([cast(Future, job.handle) for job in running], return_when=FIRST_COMPLETED)
            return [job for job in running if job.handle in done]

        for job in keep_busy(items, self._workers, start=start, finished=finished,
                             on_start=lambda index, worker: on_start and on_start(index, worker.name)):
            if job.worker is None:
                yield LostFrame(job.index, "")
                continue
            job.worker.busy = False
            future = cast(Future, job.handle)
            if _died_or_stopped(future):
                job.worker.dead = job.retire = True
                yield LostFrame(job.index, job.worker.name)
                continue
            png, seconds = future.result()
            assert job.worker.info is not None  # set by load, before any frame
            yield MadeImage(job.index, png, job.worker.info.device, seconds)

    @property
    def max_prompt_tokens(self) -> int:
        return self._token_limit

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text``, counted by the first worker's tokenizer."""
        return self._workers[0].executor.submit(_count_tokens, [text]).result()[1][0]

    def close(self) -> None:
        """Stop every worker: idle ones as they finish, busy ones (an error or Ctrl-C is unwinding) at once
        instead of waiting for their frame or model load to finish: SIGTERM ends a busy worker's task
        (``_stop_on_sigterm``), then the shutdown ends the process, each through its usual exit."""
        workers, self._workers = self._workers, []
        for worker in workers:  # all at once: a stopping worker takes a moment to reach its exit
            if worker.busy and not worker.dead and worker.pid is not None:
                try:
                    os.kill(worker.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for worker in workers:
            worker.executor.shutdown(wait=True, cancel_futures=True)


def _died_or_stopped(future: Future) -> bool:
    """Whether the worker that held ``future`` died (the pool broke) or SIGTERM stopped its task."""
    return isinstance(future.exception(), (BrokenProcessPool, SystemExit))


@contextmanager
def _ctrl_c_held():
    """Hold back SIGINT in this thread while it starts worker processes. A child starts with its parent's
    signal mask, so a Ctrl-C in a worker's first moments (before ``_start_worker`` ignores SIGINT) is discarded
    there instead of ending its interpreter start-up with a traceback; here it arrives when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# --- what runs inside a worker process ---------------------------------------------------------------------

_backend: TorchBackend | None = None


def _start_worker(pid_queue, parent_pid: int) -> None:
    # A worker holds a whole model: it must not outlive the render that started it, even one killed with SIGKILL.
    end_with_parent(parent_pid)
    watch_parent(parent_pid)
    _ignore_ctrl_c()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    pid_queue.put(os.getpid())


def _ignore_ctrl_c() -> None:
    """Ctrl-C reaches the whole process group; the parent decides what stops (and ends busy workers itself).
    Ignoring SIGINT discards one that arrived while the parent held it back (``_ctrl_c_held``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _stop_on_sigterm(signum, frame) -> None:
    # SIGTERM's default action ends the process without multiprocessing's exit handlers, and the named
    # semaphore tqdm made here (diffusers' progress bar) stays registered with the resource tracker, which warns
    # about it as the render exits. SystemExit unwinds instead: a task it interrupts goes back to the parent as
    # its result and the worker leaves at the shutdown that follows; between tasks the worker leaves at once.
    # Either way multiprocessing runs its exit handlers before the interpreter shuts down; the os._exit then
    # skips the interpreter's teardown of the loaded model (seconds), which a stopped worker does not need.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut those handlers short
    atexit.register(os._exit, 128 + signum)
    raise SystemExit(128 + signum)


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
    assert _backend is not None  # _load ran first in this worker
    image = _backend.generate(request)
    return encode_png(image), time.perf_counter() - started


def _count_tokens(texts: list[str]) -> tuple[int, list[int]]:
    assert _backend is not None  # _load ran first in this worker
    return _backend.max_prompt_tokens, [_backend.count_tokens(text) for text in texts]
