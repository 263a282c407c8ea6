"""Progress of a render as a stream of events, and the displays that consume it.

``render`` calls ``on_event(event)`` with the dataclasses below, in this order::

    RenderStarted, [WorkerStarted…, ModelLoaded, WarmedUp], (FrameStarted, StepDone…, FrameDone)…, RenderFinished

With several devices (``devices=``), frames are made side by side: their FrameStarted/FrameDone interleave,
FrameDone comes in the order frames finish, and there are no StepDone events (progress is per frame).
Any callable can listen: a notebook widget, a log, a test. ``TqdmProgress`` is the terminal display.
"""

from __future__ import annotations

import html
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .expectations import long_run_warning
from .machine import device_notice
from .manifest import frame_filename, frames_dir


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
class RenderFinished:
    made: tuple[int, ...]
    kept: tuple[int, ...]
    seconds: float
    device: str | None


Event = (RenderStarted | WorkerStarted | ModelLoaded | WarmedUp | FrameStarted | StepDone | FrameDone
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


class NotebookProgress:
    """Notebook display: a bar over frames, a bar over the current frame's steps, a line with the device,
    seconds per frame and ETA, and (optionally) a gallery where frames appear as they finish.

    Built from ipywidgets; the final state stays visible after the run. Show it with ``display(progress)``.
    """

    def __init__(self, gallery: bool = True, thumbnail: int = 128):
        import ipywidgets as w

        self.thumbnail = thumbnail
        self.notice = w.HTML()
        self.warning = w.HTML()
        self.frames_bar = w.IntProgress(value=0, min=0, max=1, description="frames", bar_style="info")
        self.steps_bar = w.IntProgress(value=0, min=0, max=1, description="steps")
        self.status = w.HTML()
        self.gallery = w.Box(layout=w.Layout(display="flex", flex_flow="row wrap")) if gallery else None
        parts = [self.notice, self.warning, self.frames_bar, self.steps_bar, self.status] + (
            [self.gallery] if gallery else [])
        self.widget = w.VBox(parts)
        self.plan: RenderStarted | None = None
        self.device = ""
        self.thumbnails: dict[int, object] = {}  # frame index → its ipywidgets.Image in the gallery
        self.watch = LongRunWatch()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __call__(self, event: Event) -> None:
        warning = self.watch(event)
        if warning:
            self.warning.value = f'<span style="color:#b26a00"><b>{html.escape(warning)}</b></span>'
        if isinstance(event, RenderStarted):
            self._started(event)
        elif isinstance(event, ModelLoaded):
            self._loaded(event)
        elif isinstance(event, WorkerStarted):
            self.status.value = f"worker {event.worker} loaded the model in {event.seconds:.1f} s on {event.device}"
        elif isinstance(event, WarmedUp):
            self.status.value = f"{event.what} in {event.seconds:.1f} s (once per run; later frames reuse it)"
        elif isinstance(event, FrameStarted):
            self.steps_bar.description = f"frame {event.index:03d}"
            self.steps_bar.value = 0
        elif isinstance(event, StepDone):
            self.steps_bar.max = event.steps
            self.steps_bar.value = event.step
        elif isinstance(event, FrameDone):
            self.frames_bar.value = event.position
            self.status.value = (f"frame {event.position}/{event.count} made in {event.seconds:.1f} s · "
                                 f"{event.seconds_per_frame:.1f} s/frame · ETA {event.eta_seconds:.0f} s · "
                                 f"on {self.device}")
            self._add_thumbnail(event.path, event.index)
        elif isinstance(event, RenderFinished):
            self._finished(event)

    def _started(self, event: RenderStarted) -> None:
        self.plan = event
        self.frames_bar.max = max(1, len(event.to_make))
        self.frames_bar.value = 0
        self.status.value = (f"{event.total} frames: {len(event.kept)} already made, {len(event.to_make)} to make "
                             f"with {event.model} ({event.steps} steps, {event.width}×{event.height}); "
                             "loading the model…" if event.to_make else f"all {event.total} frames already made")
        for index in event.kept:
            self._add_thumbnail(frames_dir(event.out_dir) / frame_filename(index), index)

    def _loaded(self, event: ModelLoaded) -> None:
        self.device = event.device
        notice = device_notice(event.device)
        self.notice.value = (f"<b>{html.escape(notice)}</b>" if notice else
                             f"Frames are made on Tenstorrent hardware: <b>{html.escape(event.device)}</b>.")
        if not event.reports_steps:
            self.steps_bar.layout.display = "none"
            note = event.note or "progress is shown per frame"
            self.notice.value += f" {html.escape(note[:1].upper() + note[1:]).rstrip('.')}."
        self.status.value = f"model loaded in {event.seconds:.1f} s on {event.device}"

    def _finished(self, event: RenderFinished) -> None:
        self.frames_bar.bar_style = "success"
        if self.plan is not None and not self.plan.to_make:
            self.frames_bar.value = self.frames_bar.max
        where = f" on {event.device}" if event.device else ""
        self.status.value = f"done: {len(event.made)} made{where}, {len(event.kept)} kept, {event.seconds:.1f} s"

    def _add_thumbnail(self, path: Path, index: int) -> None:
        if self.gallery is None or not Path(path).is_file():
            return
        import ipywidgets as w

        # No tooltip: JupyterLab's ImageView fails to render an Image widget that has one (seen in Chromium).
        self.thumbnails[index] = w.Image(value=Path(path).read_bytes(), format="png", width=str(self.thumbnail),
                                         height=str(self.thumbnail))
        self.gallery.children = tuple(self.thumbnails[i] for i in sorted(self.thumbnails))


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, VS Code, nbval, Colab), where widgets can be shown."""
    if "google.colab" in sys.modules:
        return True
    ipython = sys.modules.get("IPython")  # a kernel has imported it already; importing it here would not help
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def for_environment(gallery: bool = True):
    """The display that fits where this runs: widgets (already shown) in a notebook, tqdm in a terminal."""
    if in_notebook():
        from IPython.display import display

        progress = NotebookProgress(gallery=gallery)
        display(progress)
        return progress
    return TqdmProgress()
