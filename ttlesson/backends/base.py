"""What every backend is: the ``Backend`` interface, the ``FrameRequest`` it is given and the image it makes.

A backend is loaded once (``load``), then makes any number of frames (``generate``, or ``generate_many`` for
several side by side), then releases what it holds (``close``); use it as a context manager so ``close`` runs on
every exit path. It says which device really ran (``device``), so manifests and notebooks can tell TT hardware
from a CPU fallback.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import BackendUnavailableError
from ..models import ModelSpec

StepCallback = Callable[[int, int], None]
"""Called after each denoising step with (steps done, total steps)."""

WaitCallback = Callable[[int | None, str], None]
"""Called while frames wait outside this process with (the frame's index or None, why)."""

B = TypeVar("B", bound="Backend")  # a backend's own class, which ``with`` gives back


@dataclass(frozen=True)
class MadeImage:
    """One frame as ``generate_many`` gives it back: its index, the image, the device that made it, seconds."""

    index: int
    image: object  # a PIL image, or the PNG's bytes where a worker process encoded it
    device: str
    seconds: float

    def png(self) -> bytes:
        if isinstance(self.image, bytes):
            return self.image
        from ..frames import encode_png

        return encode_png(self.image)


@dataclass(frozen=True)
class LostFrame:
    """A frame ``generate_many`` could not make because the worker making it died (a worker pool's)."""

    index: int
    worker: str  # the worker that died holding it; "" when no worker was left to make it


@dataclass(frozen=True)
class FrameRequest:
    """What a backend is told to make one frame: only what decides its pixels. Every field is part of the frame's
    identity: the manifest's ``FrameRecord`` stores each one, and a frame is reused only when all of them match."""

    prompt: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    negative_prompt: str | None = None
    scheduler: str = "default"  # a name from ttlesson.models.schedulers; "default" is the model's own
    # A keyframe walk's in-between (ttlesson.walk): this frame lies at ``weight`` from the keyframe above (its
    # prompt, negative prompt and seed) to the one these name; None for a keyframe.
    to_prompt: str | None = None
    to_negative_prompt: str | None = None
    to_seed: int | None = None
    weight: float = 0.0
    # Mixed seed mode: a base noise from this seed shared by every keyframe, plus ``noise_mix`` of the frame's own.
    noise_base: int | None = None
    noise_mix: float = 0.0


class Backend(ABC):
    name: str = ""
    reports_steps = True  # False where steps run inside one device trace and only whole frames can be reported
    warm_up_note = "warm-up"  # what ``warm_up`` did, in words, for the display
    schedulers: tuple[str, ...] | None = None  # the schedulers it runs; None: any that fits the model
    log_folder: Path | None = None  # where the device's own log goes (the tt backend: tt-metal's); render sets it
    on_wait: WaitCallback | None = None  # told while frames wait outside this process (a render service's queue)

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    @property
    def progress_note(self) -> str:
        """What the progress display should say about this backend (e.g. why it has no step bar)."""
        return ""

    @property
    def precision(self) -> str:
        """The numerics its frames are made with (``backends.torch.precision``); recorded in the manifest."""
        return ""

    @property
    def parallel(self) -> int:
        """Frames made at the same time by ``generate_many`` (the tt backend: one per chip)."""
        return 1

    @property
    def started_workers(self) -> tuple:
        """Worker processes ``load`` started (a worker pool's WorkerInfo), for the display."""
        return ()

    @property
    @abstractmethod
    def device(self) -> str:
        """The device that makes the frames, in words (``cpu``, ``cuda:0 (NVIDIA H100)``)."""

    @abstractmethod
    def load(self) -> None:
        """Load the model; called once before the first frame."""

    @abstractmethod
    def generate(self, request: FrameRequest, on_step: StepCallback | None = None):
        """Make one frame and return it as a PIL image."""

    def close(self) -> None:
        """Release the model and the device; safe to call more than once."""

    def check_request(self, request: FrameRequest) -> None:
        """Refuse, with one sentence, a request this backend cannot make; called before anything is loaded."""

    def check_scheduler(self, request: FrameRequest) -> None:
        """Refuse, with one sentence, a scheduler this backend does not implement."""
        if self.schedulers is not None and request.scheduler not in ("default", *self.schedulers):
            raise BackendUnavailableError(f"Scheduler {request.scheduler} does not run on the {self.name} backend, "
                                          f"which implements {', '.join(self.schedulers)} only; leave --scheduler "
                                          "out, or use --backend torch.")

    def warm_up(self, request: FrameRequest) -> float:
        """Do the one-off work frames like ``request`` need (TT: compile and capture the trace); seconds spent."""
        return 0.0

    def for_frames(self, count: int) -> Backend:
        """The engine that will make ``count`` frames, told before it loads: itself here (a worker pool starts no
        more workers than frames, and a pool of one is a plain backend in this process)."""
        return self

    def generate_many(self, items, on_start=None, on_step=None):
        """Make the ``(index, request)`` items, yielding a ``MadeImage`` for each as it is done (side by side where
        ``parallel`` > 1); ``on_start(index, device)`` is called as each begins and ``on_step(index, step, total)``
        after each denoising step where the backend reports steps. Here: one after another."""
        for index, request in items:
            if on_start is not None:
                on_start(index, self.device)
            started = time.perf_counter()
            steps = None if on_step is None else (lambda step, total, i=index: on_step(i, step, total))
            image = self.generate(request, on_step=steps)
            yield MadeImage(index, image, self.device, time.perf_counter() - started)

    @property
    def max_prompt_tokens(self) -> int:
        return 77

    def count_tokens(self, text: str) -> int:
        """Tokens the text encoder sees for ``text`` (start and end markers included). A backend that cannot
        count them (tt-metal's SD 3.5 Large keeps its tokenizers inside its pipeline) raises NotImplementedError,
        and no prompt is warned about."""
        raise NotImplementedError

    def __enter__(self: B) -> B:
        self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
