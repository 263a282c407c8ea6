"""Progress of a render as a stream of events, and the displays that consume it.

``render`` calls ``on_event(event)`` with the dataclasses below, in this order::

    RenderStarted, [WorkerStarted…, ModelLoaded, WarmedUp], (FrameStarted, StepDone…, FrameDone)…, RenderFinished

With several devices (``devices=``), frames are made side by side: their FrameStarted/FrameDone interleave,
FrameDone comes in the order frames finish, and there are no StepDone events (progress is per frame).
Through a render service (``server=``), ``Waiting`` events come between them: a frame's place in the service's
queue, a device that died under a frame, or the service not answering.
Any callable can listen: a notebook widget (``ttlesson.notebook.widgets.NotebookProgress``), a log, a test.
``TqdmProgress`` is the terminal display.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .tenstorrent.boards import device_notice
from .tenstorrent.speeds import long_run_warning


@dataclass(frozen=True)
class RenderStarted:
    total: int  # frames to have: the storyboard's keyframes and any in-betweens of a walk
    to_make: tuple[int, ...]  # indices this run will generate
    kept: tuple[int, ...]  # indices already on disk with matching settings
    model: str
    backend: str
    steps: int
    width: int
    height: int
    out_dir: Path


@dataclass(frozen=True)
class WorkerStarted:
    """One worker process (``devices=`` on the torch backend) has loaded its model."""

    worker: str  # e.g. "cpu#1", "cuda:0"
    device: str
    pid: int
    seconds: float


@dataclass(frozen=True)
class ModelLoaded:
    device: str
    seconds: float
    reports_steps: bool  # False: the backend can only report whole frames (a traced TT loop, worker processes)
    note: str = ""  # what the display should say about how progress is reported


@dataclass(frozen=True)
class WarmedUp:
    """One-off work before the first frame, timed apart from it (TT: kernel compile and trace capture)."""

    seconds: float
    what: str


@dataclass(frozen=True)
class FrameStarted:
    index: int
    position: int  # 1-based among the frames this run makes
    count: int  # frames this run makes
    prompt: str
    device: str = ""  # the worker or chip making it, when several make frames side by side


@dataclass(frozen=True)
class StepDone:
    index: int
    step: int
    steps: int


@dataclass(frozen=True)
class FrameDone:
    index: int
    position: int
    count: int
    path: Path
    seconds: float
    seconds_per_frame: float  # steady-state average: the first (warm-up) frame is left out once there are others
    eta_seconds: float
    device: str = ""  # the device that made it


@dataclass(frozen=True)
class Waiting:
    """A frame (or, with no index, the whole render) is waiting on a render service: its place in the queue, a
    device that died under it, or the service not answering."""

    index: int | None
    why: str


@dataclass(frozen=True)
class RenderFinished:
    made: tuple[int, ...]
    kept: tuple[int, ...]
    seconds: float
    device: str | None


Event = (RenderStarted | WorkerStarted | ModelLoaded | WarmedUp | FrameStarted | StepDone | FrameDone | Waiting
         | RenderFinished)


def steady_seconds_per_frame(durations: list[float]) -> float:
    """Average seconds per frame, leaving out the first frame (compilation, caches) once others exist."""
    steady = durations[1:] if len(durations) > 1 else durations
    return sum(steady) / len(steady) if steady else 0.0


class LongRunWatch:
    """Times a render's first denoising step and, when that says the whole render will take long (the real
    SD 1.4 on a CPU: minutes per frame), returns once the sentence with the estimate and how to stop."""

    def __init__(self):
        self.plan: RenderStarted | None = None
        self.device = ""
        self.first_frame_started: float | None = None
        self.done = False

    def __call__(self, event: Event) -> str | None:
        if isinstance(event, RenderStarted):  # a new render: start over
            self.device, self.first_frame_started, self.done = "", None, False
            self.plan = event
        elif isinstance(event, ModelLoaded):
            self.device = event.device
        elif isinstance(event, FrameStarted) and self.first_frame_started is None:
            self.first_frame_started = time.perf_counter()
        elif isinstance(event, StepDone) and not self.done and self.first_frame_started is not None and self.plan:
            self.done = True
            where = "the CPU" if self.device.startswith("cpu") else (self.device or "this device")
            return long_run_warning(time.perf_counter() - self.first_frame_started, event.steps,
                                    len(self.plan.to_make), where)
        return None


class TqdmProgress:
    """Terminal display: on a terminal, a bar over frames and one over the current frame's steps;
    in a log (not a terminal), one line per finished frame."""

    BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"

    def __init__(self, file=None):
        self.file = file if file is not None else sys.stderr
        self.live = hasattr(self.file, "isatty") and self.file.isatty()
        self.plan: RenderStarted | None = None
        self.step_bars = True
        self.frames_bar = None
        self.steps_bar = None
        self.watch = LongRunWatch()
        self.last_wait = ""

    def __call__(self, event: Event) -> None:
        warning = self.watch(event)
        if warning:
            self._write(warning)
        if isinstance(event, RenderStarted):
            self.plan = event  # told together with the device once the model is loaded: a failed load prints nothing
        elif isinstance(event, ModelLoaded) and self.plan is not None:
            plan = self.plan
            self._write(f"{plan.total} frames: {len(plan.kept)} already made, {len(plan.to_make)} to make with "
                        f"{plan.model} ({plan.steps} steps, {plan.width}×{plan.height}) on {event.device}, "
                        f"model loaded in {event.seconds:.1f} s → {plan.out_dir}")
            notice = device_notice(event.device)
            if notice:
                self._write(notice)
            self.step_bars = event.reports_steps
            if event.note:
                self._write(event.note)
        elif isinstance(event, WarmedUp):
            self._write(f"{event.what} in {event.seconds:.1f} s")
        elif isinstance(event, Waiting) and event.why != self.last_wait:
            self.last_wait = event.why
            self._write(event.why)
        elif isinstance(event, FrameStarted) and self.live:
            self._start_bars(event)
        elif isinstance(event, StepDone) and self.steps_bar is not None:
            self.steps_bar.total = event.steps
            self.steps_bar.n = event.step
            self.steps_bar.refresh()
        elif isinstance(event, FrameDone):
            timing = f"{event.seconds_per_frame:.1f} s/frame, ETA {event.eta_seconds:.0f} s"
            if self.frames_bar is not None:
                self._close_steps()
                self.frames_bar.set_postfix_str(timing, refresh=False)
                self.frames_bar.update(1)
            else:
                where = f" on {event.device}" if event.device else ""
                self._write(f"frame {event.index:03d} made in {event.seconds:.1f} s{where} "
                            f"({event.position}/{event.count}, {timing})")
        elif isinstance(event, RenderFinished):
            self.close()

    def close(self) -> None:
        self._close_steps()
        if self.frames_bar is not None:
            self.frames_bar.close()
            self.frames_bar = None

    def _start_bars(self, event: FrameStarted) -> None:
        from tqdm import tqdm

        if self.frames_bar is None:
            self.frames_bar = tqdm(total=event.count, desc="frames", unit="frame", file=self.file, position=0,
                                   bar_format=self.BAR_FORMAT, dynamic_ncols=True)
        if self.step_bars:
            self.steps_bar = tqdm(total=None, desc=f"frame {event.index:03d}", unit="step", file=self.file,
                                  position=1, leave=False, bar_format=self.BAR_FORMAT, dynamic_ncols=True)

    def _close_steps(self) -> None:
        if self.steps_bar is not None:
            self.steps_bar.close()
            self.steps_bar = None

    def _write(self, text: str) -> None:
        if self.frames_bar is not None:
            self.frames_bar.write(text, file=self.file)
        else:
            print(text, file=self.file, flush=True)
