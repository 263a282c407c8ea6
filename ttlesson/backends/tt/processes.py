"""SD 1.4 on several Tenstorrent chips, one worker process per PCIe chip (``--tt-parallel processes``).

The other way to use several chips (``submesh``, the default) opens the whole mesh in one process and gives
every chip, ethernet-only ones included, its own 1×1 submesh. tt-metal has no precedent for SD 1.4 on a
remote chip's submesh; what it does have is one process per device group, each told which chips it may see with
``TT_VISIBLE_DEVICES`` (tt-inference-server's device workers). This backend does that: worker *i* starts with
``TT_VISIBLE_DEVICES=i``, opens a 1×1 mesh on that PCIe chip, and makes frames with the same ``TTSD14Backend`` as
one process would. Remote chips (the second chip of an N300, four of a T3K's eight) stay idle.

The parent never imports ttnn: it finds the PCIe chips from the kernel driver's device nodes (or the mock
cluster descriptor), hands out frames, and is the only writer of frames and manifest. Each worker writes
tt-metal's log to its own file. Closing (normally, on an exception, Ctrl-C or SIGTERM) tells every worker to
release its trace and close its chip; a worker whose parent disappears does the same when its pipe closes.
"""

from __future__ import annotations

import importlib
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from ... import env, errors
from ...errors import NoTTDeviceError, TTDeviceError, TTLessonError
from ...models import ModelSpec
from ..base import Backend, FrameRequest, MadeImage, StepCallback
from ..scheduling import Job, keep_busy
from .device import DEVICE_NODES, no_device, refuse_unrunnable
from .sd14 import PER_FRAME_NOTE, check_sd14_model, chips_wanted, sd14_problems
from .session import DeviceSession

START_SECONDS = 3600.0  # loading weights and opening a chip; the first compile comes later, in warm_up
CLOSE_SECONDS = 60.0


def pcie_device_ids() -> list[int]:
    """The PCIe chips a worker can be given (``TT_VISIBLE_DEVICES`` ids), found without ttnn.

    The kernel driver's ``/dev/tenstorrent/<n>`` nodes, or the ``chips_with_mmio`` of a mock cluster descriptor;
    limited to ``TT_VISIBLE_DEVICES`` when the user set it.
    """
    mock = env.mock_cluster()
    if mock:
        try:
            text = Path(mock).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        section = re.search(r"^chips_with_mmio:(.*?)(?=^\S)", text + "\nend:", flags=re.MULTILINE | re.DOTALL)
        ids = sorted(range(len(re.findall(r"\d+\s*:\s*\d+", section.group(1))))) if section else []
    else:
        ids = sorted(int(node.name) for node in DEVICE_NODES.glob("*") if node.name.isdigit())
    visible = env.text(env.VISIBLE_DEVICES)
    if visible:
        wanted = {int(part) for part in re.findall(r"\d+", visible)}
        ids = [device for device in ids if device in wanted]
    return ids


@dataclass
class _Worker:
    device_id: int
    process: BaseProcess
    conn: Connection
    label: str = ""  # e.g. "tt:2 (wormhole_b0)"


class TTProcessesBackend(Backend):
    """SD 1.4 with one worker process per PCIe chip, each driving its own chip through ``TTSD14Backend``."""

    name = "tt"
    schedulers = ("pndm",)  # tt-metal's TtPNDMScheduler, in every worker
    precision = "tt-metal"
    reports_steps = False
    progress_note = PER_FRAME_NOTE + " (one worker process per PCIe chip)"
    warm_up_note = "kernels compiled and the denoising loop captured as a device trace in every worker"

    def __init__(self, spec: ModelSpec, devices: int | str = 1, runtime_factory: str | None = None):
        super().__init__(spec)
        self.devices = devices
        self.runtime_factory = runtime_factory  # "module:function" returning a Runtime in the worker (tests)
        self.log_folder: Path | None = None
        self.arch = ""
        self._workers: list[_Worker] = []
        self._session = DeviceSession()

    @property
    def device(self) -> str:
        names = ", ".join(worker.label for worker in self._workers) or "not opened"
        return f"Tenstorrent, one process per PCIe chip ({names})"

    @property
    def parallel(self) -> int:
        return max(1, len(self._workers))

    def check_request(self, request: FrameRequest) -> None:
        refuse_unrunnable(sd14_problems(self.spec, request), lambda: bool(pcie_device_ids()))

    def load(self) -> None:
        if self._session.is_open:
            return
        check_sd14_model(self.spec)
        ids = pcie_device_ids()
        if not ids:
            raise NoTTDeviceError(no_device())
        ids = ids[:chips_wanted(self.devices, len(ids))]
        self._session = DeviceSession()
        self._session.open(lambda stack: self._start(stack, ids))

    def _start(self, stack: ExitStack, ids: list[int]) -> None:
        stack.callback(self._stop_workers)  # first: also stops the workers started before one failed
        context = get_context("spawn")
        for device_id in ids:
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_worker_main, name=f"ttlesson-tt-{device_id}", daemon=True,
                                      args=(child_end, self.spec, device_id, self.runtime_factory, self.log_folder))
            process.start()
            child_end.close()
            self._workers.append(_Worker(device_id, process, parent_end))
        for worker in self._workers:
            label, arch, _ = self._expect(worker, "loaded", START_SECONDS)
            worker.label, self.arch = label, arch

    def warm_up(self, request: FrameRequest) -> float:
        self.check_request(request)
        self.load()
        started = time.perf_counter()
        with self._session.working():
            for worker in self._workers:
                worker.conn.send(("warm", request))
            captured = [self._expect(worker, "warmed", None) for worker in self._workers]
        return time.perf_counter() - started if any(captured) else 0.0

    def generate(self, request: FrameRequest, on_step: StepCallback | None = None):
        (frame,) = self.generate_many([(0, request)])
        return frame.image

    def generate_many(self, items: Iterable[tuple[int, FrameRequest]],
                      on_start: Callable[[int, str], None] | None = None, on_step=None) -> Iterator[MadeImage]:
        queue = deque(items)
        if not queue:
            return
        self.check_request(queue[0][1])
        self.load()
        with self._session.working():
            yield from self._make_frames(queue, on_start)

    def _make_frames(self, queue: deque, on_start) -> Iterator[MadeImage]:
        traced_for = None  # the (steps, guidance) the workers' traces are captured for

        def start(worker: _Worker, index: int, request: FrameRequest) -> None:
            worker.conn.send(("frame", index, request))

        def warm_up(request: FrameRequest) -> None:
            nonlocal traced_for
            self.warm_up(request)
            traced_for = (request.steps, request.guidance)

        def finished(running: list[Job[_Worker]]) -> list[Job[_Worker]]:
            ready = wait([_held_by(job).conn for job in running])
            return [job for job in running if _held_by(job).conn in ready]

        for job in keep_busy(queue, self._workers, start=start, finished=finished,
                             needs_idle=lambda request: (request.steps, request.guidance) != traced_for,
                             when_idle=warm_up,
                             on_start=lambda index, worker: on_start and on_start(index, worker.label)):
            worker = _held_by(job)
            size, pixels = self._expect(worker, "made", None)
            label = worker.label if self.parallel > 1 else self.device
            yield MadeImage(job.index, _image(size, pixels), label, job.seconds)

    def count_tokens(self, text: str) -> int:
        self.load()
        worker = self._workers[0]
        worker.conn.send(("tokens", text))
        return self._expect(worker, "tokens", CLOSE_SECONDS)

    def close(self) -> None:
        self._session.close()

    def _stop_workers(self) -> None:
        """Tell every worker to release its trace and close its chip; stop those that do not within the limit."""
        workers, self._workers = self._workers, []
        for worker in workers:
            try:
                worker.conn.send(("close",))
            except (OSError, ValueError):
                pass  # already gone
        deadline = time.monotonic() + CLOSE_SECONDS
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():  # it did not close in time: stop it; its chip may need tt-smi -r
                worker.process.terminate()
                worker.process.join(5)
            worker.conn.close()

    def _expect(self, worker: _Worker, kind: str, timeout: float | None):
        """The payload of the worker's next message, which must be ``kind``; a worker's error is raised here."""
        if timeout is not None and not worker.conn.poll(timeout):
            raise TTDeviceError(f"Tenstorrent worker for chip {worker.device_id} did not answer within {timeout:g} s; "
                                "check the chip with tt-smi -s, and reset it with tt-smi -r if a run hung.")
        try:
            message = worker.conn.recv()
        except (EOFError, OSError) as err:
            code = worker.process.exitcode
            raise TTDeviceError(f"Tenstorrent worker for chip {worker.device_id} stopped (exit status {code}); "
                                "its log is next to the frames (tt-metal-<chip>.log); check the chip with tt-smi "
                                "-s and reset it with tt-smi -r if it is stuck.") from err
        if message[0] == "error":
            _, name, text = message
            raise getattr(errors, name, TTLessonError)(text)
        if message[0] != kind:
            raise TTDeviceError(f"Tenstorrent worker for chip {worker.device_id} answered {message[0]!r} where "
                                f"{kind!r} was expected; this is a bug in ttlesson.")
        return message[1] if len(message) == 2 else message[1:]


def _held_by(job: Job[_Worker]) -> _Worker:
    """The worker making a job's frame: every frame has one here, as no worker leaves the pool while frames run."""
    assert job.worker is not None, "a worker left the pool"
    return job.worker


def _image(size: tuple[int, int], pixels: bytes):
    from PIL import Image

    return Image.frombytes("RGB", size, pixels)


# --- in the worker process ------------------------------------------------------------------------------

def _worker_main(conn: Connection, spec: ModelSpec, device_id: int, runtime_factory: str | None,
                 log_folder: Path | None) -> None:
    os.environ[env.VISIBLE_DEVICES] = str(device_id)  # before ttnn is imported: this process sees its own chip
    from .runtime import Runtime
    from .sd14 import TTSD14Backend

    runtime = load_factory(runtime_factory)() if runtime_factory else Runtime()
    backend = TTSD14Backend(spec, devices=1, runtime=runtime, one_chip_mesh=True, first_chip=device_id)
    if log_folder is not None:
        backend.log_folder, backend.log_name = Path(log_folder), f"tt-metal-{device_id}.log"
    try:
        started = time.perf_counter()
        backend.load()
        conn.send(("loaded", backend.chip_labels[0], backend.arch, time.perf_counter() - started))
        _serve(conn, backend)
    except TTLessonError as err:
        _send(conn, ("error", type(err).__name__, str(err)))
    except (KeyboardInterrupt, EOFError, OSError):
        pass  # Ctrl-C, SIGTERM or the parent gone: close below
    finally:
        backend.close()
        conn.close()


def _serve(conn: Connection, backend) -> None:
    from PIL import Image

    while True:
        message = conn.recv()
        if message[0] == "close":
            return
        try:
            if message[0] == "warm":
                conn.send(("warmed", backend.warm_up(message[1]) > 0))
            elif message[0] == "frame":
                image: Image.Image = backend.generate(message[2])
                conn.send(("made", image.size, image.convert("RGB").tobytes()))
            elif message[0] == "tokens":
                conn.send(("tokens", backend.count_tokens(message[1])))
        except TTLessonError as err:
            conn.send(("error", type(err).__name__, str(err)))


def _send(conn: Connection, message) -> None:
    try:
        conn.send(message)
    except (OSError, ValueError):
        pass


def load_factory(path: str):
    """The function a ``"module:function"`` path names (a runtime factory given to a worker process or actor)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)

