"""tt-metal's SD 1.4 on one or more Tenstorrent chips, one traced pipeline per chip, all in this process.

``load`` checks, in this order and before any weights are read: that the model is one tt-metal implements,
that a Tenstorrent chip exists (else "no Tenstorrent device" and the fix), that the tt-metal checkout holds
the model's package (else a sentence naming ``TT_METAL_HOME``). Then it opens the host's mesh once, in the
shape the plan gives (``plan``), checks each chip's compute grid, and builds one SD 1.4 pipeline per chip
(``chip``).

``warm_up`` compiles and captures the traced loop on every chip (the first run compiles kernels: minutes);
``generate`` makes one frame on the first chip, ``generate_many`` keeps every chip busy. The trace runs all
denoising steps at once, so progress is per frame (``reports_steps`` is False). ``close`` releases every trace,
then closes the chips and the mesh; the context manager, ``render``, an interpreter-exit hook and SIGTERM all
call it, so exceptions, Ctrl-C and ``kill`` leave the device closed, not in a bad state.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ... import env
from ...errors import BackendUnavailableError
from ...models import ModelSpec
from ...presenting import lever
from ...tenstorrent.arch import Arch
from ...tenstorrent.presets import GRID_OVERRIDES, SD14_MAX_STEPS, TTSystem, grid_problem, plan_sd14, steps_problem
from ..base import Backend, FrameRequest, MadeImage, StepCallback
from ..scheduling import keep_busy
from .chip import MIN_STEPS, SIZE, ChipPipeline, HostModels, frame_inputs, to_image
from .device import (
    claim_cards,
    compute_grid,
    describe_system,
    galaxy_arch_before_ttnn,
    open_error,
    open_mesh,
    prepare_environment,
    refuse_unrunnable,
    require_chips,
    split_into_chips,
)
from .runtime import LOG_NAME, Runtime, default_log_file
from .session import DeviceSession

PER_FRAME_NOTE = "progress is per frame: the denoising steps run inside one device trace"


@dataclass
class TTTimings:
    load_seconds: float = 0.0  # device open, weights, device models
    capture_seconds: list[float] = field(default_factory=list)  # one per (re)capture: compile + trace capture
    frame_seconds: list[float] = field(default_factory=list)


def check_sd14_model(spec: ModelSpec) -> None:
    problem = model_problem(spec)
    if problem:
        raise BackendUnavailableError(problem[0])


def model_problem(spec: ModelSpec) -> tuple[str, str] | None:
    if spec.name == "sd14":
        return None
    return (f"The tt backend runs tt-metal's own models, {lever('model', 'sd14')} (every chip) or sd35-large "
            f"(T3K/Galaxy/QuietBox); {spec.name} runs with {lever('backend', 'torch')}.",
            f"{lever('model', 'sd14')} (tt-metal's own model, not {spec.name})")


def sd14_problems(spec: ModelSpec, request: FrameRequest) -> list[tuple[str, str]]:
    """(sentence, fix) for each thing about a frame that tt-metal's traced SD 1.4 cannot make: another model,
    another size, too few or too many steps."""
    problems = [problem for problem in (model_problem(spec),) if problem]
    if (request.width, request.height) != (SIZE, SIZE):
        problems.append((f"Size {request.width}x{request.height} does not run on the tt backend: tt-metal's "
                         f"SD 1.4 makes {SIZE}x{SIZE} frames only (give {lever('size', SIZE)}).", lever("size", SIZE)))
    if request.steps < MIN_STEPS:
        fewest = lever("steps", MIN_STEPS)
        problems.append((f"Steps {request.steps} is too few for tt-metal's PNDM scheduler; give {fewest} or more "
                         "(sd14 uses 50).", f"{fewest} or more"))
    too_many = steps_problem(request.steps)
    if too_many:
        problems.append((too_many, f"{lever('steps', SD14_MAX_STEPS)} or fewer"))
    return problems


class TTSD14Backend(Backend):
    """SD 1.4 on one or more Tenstorrent chips, one pipeline and one trace per chip, all in this process."""

    name = "tt"
    schedulers = ("pndm",)  # tt-metal's TtPNDMScheduler
    precision = "tt-metal"
    reports_steps = False
    progress_note = PER_FRAME_NOTE
    warm_up_note = ("kernels compiled and the denoising loop captured as a device trace "
                    "(once per process and step count)")

    def __init__(self, spec: ModelSpec, devices: int | str = 1, runtime: Runtime | None = None,
                 one_chip_mesh: bool = False, first_chip: int = 0):
        super().__init__(spec)
        self.devices = devices
        self.runtime = runtime or Runtime()
        self.one_chip_mesh = one_chip_mesh  # open a 1×1 mesh (this process's PCIe chip) whatever the system is
        self.first_chip = first_chip  # the number this process's first chip is called by (tt:N)
        self.timings = TTTimings()
        self.arch = ""
        self.system: TTSystem | None = None  # once loaded
        self.mesh_shape: tuple[int, int] = (0, 0)
        self.package = ""  # which tt-metal package the pipelines came from, in words
        self.log_folder: Path | None = None  # set by render: tt-metal's log goes to log_folder/log_name
        self.log_name = LOG_NAME
        self.log_file: Path | None = None
        self._ttnn: object = None
        self._host: HostModels | None = None
        self._pipelines: list[ChipPipeline] = []
        self._session = DeviceSession()

    @property
    def device(self) -> str:
        names = ", ".join(pipeline.chip.name for pipeline in self._pipelines) or "not opened"
        return f"Tenstorrent {self.arch} ({names})" if self.arch else "Tenstorrent (not opened)"

    @property
    def parallel(self) -> int:
        return max(1, len(self._pipelines))

    def check_request(self, request: FrameRequest) -> None:
        """No device, another model, another size, too few or too many steps: refused together, before anything
        loads."""
        refuse_unrunnable(sd14_problems(self.spec, request), self.runtime.driver_check)

    def load(self) -> None:
        if self._session.is_open:
            return
        check_sd14_model(self.spec)
        started = time.perf_counter()
        self._session = DeviceSession()
        self._session.open(self._open)
        self.timings.load_seconds = time.perf_counter() - started

    def _open(self, stack: ExitStack) -> None:
        galaxy = galaxy_arch_before_ttnn()
        self.log_file = prepare_environment(
            log_file=(self.log_folder / self.log_name) if self.log_folder else default_log_file(),
            grid_override=GRID_OVERRIDES.get((galaxy, (8, 4))) if galaxy else None)
        if not self.one_chip_mesh:  # (a per-chip process was given its card by its parent)
            claim_cards(self.devices)  # another process's card is refused by name; --devices 1 opens one card
        ttnn, available = require_chips(self.runtime.ttnn_loader, self.runtime.driver_check)
        system = describe_system(ttnn, available)
        mesh_shape = (1, 1) if self.one_chip_mesh else plan_sd14(system).mesh_shape
        count = chips_wanted(self.devices, 1 if self.one_chip_mesh else available)
        sd = self.runtime.sd14_loader(system.arch)
        if system.arch == Arch.WORMHOLE:
            os.environ.setdefault(env.MM_THROTTLE, "5")  # tt-metal's demo sets it on Wormhole (di/dt limits)
        mesh = stack.enter_context(open_mesh(ttnn, mesh_shape=mesh_shape, l1_small_size=sd.l1_small_size,
                                             trace_region_size=sd.trace_region_size, log_file=self.log_file))
        with self._device_errors():
            chips = split_into_chips(ttnn, mesh, count, first=self.first_chip)
            for chip in chips:
                problem = grid_problem(system.arch, compute_grid(chip.mesh), chip.name)
                if problem:
                    raise BackendUnavailableError(problem)
        host = self.runtime.host_loader(self.spec)
        stack.callback(self._pipelines.clear)
        with self._device_errors():
            for chip in chips:
                pipeline = ChipPipeline(ttnn, sd, chip, host)
                stack.callback(pipeline.release)  # runs before the mesh closes: the stack unwinds in reverse
                self._pipelines.append(pipeline)
        self._ttnn, self._host, self.arch = ttnn, host, system.arch.metal_name
        self.system, self.mesh_shape = system, mesh_shape
        self.package = f"{sd.package.module} ({sd.package.layout} layout, {sd.package.checkout})"

    def warm_up(self, request: FrameRequest) -> float:
        """Compile and capture the loop for this request's step count and guidance on every chip."""
        self.check_request(request)
        self.load()
        started = time.perf_counter()
        captured = False
        with self._session.working(), self._device_errors():
            for pipeline in self._pipelines:
                if not pipeline.has_trace_for(request.steps, request.guidance):
                    pipeline.capture(request.steps, request.guidance)
                    captured = True
        seconds = time.perf_counter() - started
        if captured:
            self.timings.capture_seconds.append(seconds)
        return seconds if captured else 0.0

    def generate(self, request: FrameRequest, on_step: StepCallback | None = None):
        (frame,) = self.generate_many([(0, request)])
        return frame.image

    def generate_many(self, items: Iterable[tuple[int, FrameRequest]],
                      on_start: Callable[[int, str], None] | None = None, on_step=None) -> Iterator[MadeImage]:
        """Make the frames of ``items`` ((index, request) pairs) on all chips, each chip working on its own frame.

        Frames come back in the order they finish; with equal work per chip that is the order given.
        """
        queue = deque(items)
        if not queue:
            return
        self.warm_up(queue[0][1])  # opens the session if it is not open
        with self._session.working():  # also while the caller stores a frame: SIGTERM then unwinds through it
            yield from self._make_frames(queue, on_start)

    def _make_frames(self, queue: deque, on_start) -> Iterator[MadeImage]:
        def start(pipeline: ChipPipeline, index: int, request: FrameRequest) -> None:
            self.check_request(request)
            assert self._host is not None, "frames are made once the session is open"
            pipeline.submit(*frame_inputs(self._host, request))

        def needs_capture(request: FrameRequest) -> bool:
            return not all(p.has_trace_for(request.steps, request.guidance) for p in self._pipelines)

        with self._device_errors():
            # The chips finish in the order they were given frames: wait for the oldest.
            for job in keep_busy(queue, self._pipelines, start=start, finished=lambda running: running[:1],
                                 needs_idle=needs_capture, when_idle=self.warm_up,
                                 on_start=lambda index, pipeline: on_start and on_start(index,
                                                                                         self._chip_label(pipeline))):
                assert job.worker is not None, "no chip leaves the pool, so every frame has one"
                image = to_image(job.worker.collect())
                seconds = job.seconds
                self.timings.frame_seconds.append(seconds)
                yield MadeImage(job.index, image, self._chip_label(job.worker) if self.parallel > 1 else self.device,
                                seconds)

    def close(self) -> None:
        self._session.close()

    def count_tokens(self, text: str) -> int:
        self.load()
        assert self._host is not None
        return len(self._host.tokenizer(text, truncation=False).input_ids)

    @property
    def chip_labels(self) -> list[str]:
        return [self._chip_label(pipeline) for pipeline in self._pipelines]

    def _chip_label(self, pipeline: ChipPipeline) -> str:
        return f"{pipeline.chip.name} ({self.arch})"

    @contextmanager
    def _device_errors(self) -> Iterator[None]:
        """Turn ttnn's RuntimeErrors while the device runs into one sentence (with the tt-smi -r advice and the log)."""
        try:
            yield
        except RuntimeError as err:
            raise open_error(err, self.log_file) from err


def chips_wanted(devices: int | str, available: int) -> int:
    """How many chips ``devices`` ("all" or a number) asks for, checked against what the host has."""
    if devices == "all":
        return available
    assert isinstance(devices, int), f"devices is a number or 'all', not {devices!r}"
    if devices > available:
        raise BackendUnavailableError(f"--devices {devices} asks for more Tenstorrent chips than this machine has "
                                      f"({available}); give --devices {available} or --devices all.")
    return devices

