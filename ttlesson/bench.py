"""Measure this machine: model load, the warm-up frame, steady seconds per frame, and stitching.

A benchmark is a real render of a few frames into a scratch folder, timed through the progress events, then
a real stitch. Numbers are reported, never asserted: speed targets and results live in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import __version__
from .progress import FrameDone, ModelLoaded, steady_seconds_per_frame
from .render import render
from .storyboard import Storyboard
from .storyboard import load as load_storyboard
from .video import stitch


@dataclass(frozen=True)
class BenchResult:
    model: str
    backend: str
    device: str
    frames: int
    steps: int
    width: int
    height: int
    load_seconds: float
    warmup_seconds: float  # the first frame: caches, kernel compilation, trace capture
    steady_seconds_per_frame: float
    stitch_seconds: float
    ttlesson: str = __version__
    machine: str = ""

    @property
    def frames_per_second(self) -> float:
        return 1 / self.steady_seconds_per_frame if self.steady_seconds_per_frame else 0.0

    def summary(self) -> str:
        return (f"{self.model} on {self.device} ({self.backend}), {self.steps} steps, {self.width}×{self.height}: "
                f"load {self.load_seconds:.1f} s, first frame {self.warmup_seconds:.2f} s, then "
                f"{self.steady_seconds_per_frame:.2f} s/frame ({self.frames_per_second:.2f} frames/s); "
                f"stitching {self.frames} frames {self.stitch_seconds:.2f} s")

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "frames_per_second": round(self.frames_per_second, 4)}, indent=2)


def run(model: str = "tiny", frames: int = 4, backend: str = "auto", device: str | None = None,
        steps: int | None = None, size: int | str | None = None) -> BenchResult:
    """Render ``frames`` prompts of the World's Fair storyboard in a scratch folder and time each part."""
    prompts = load_storyboard("worlds-fair").frames
    board = Storyboard(frames=[prompts[i % len(prompts)] for i in range(max(2, frames))], name="bench")
    loaded: list[ModelLoaded] = []
    done: list[FrameDone] = []

    def listen(event) -> None:
        if isinstance(event, ModelLoaded):
            loaded.append(event)
        elif isinstance(event, FrameDone):
            done.append(event)

    with tempfile.TemporaryDirectory(prefix="ttlesson-bench-") as scratch:
        result = render(board, scratch, model=model, backend=backend, device=device, steps=steps, size=size,
                        on_event=listen)
        started = time.perf_counter()
        stitch(scratch, Path(scratch) / "bench.mp4")
        stitch_seconds = time.perf_counter() - started
    record = result.manifest.frames[0]
    return BenchResult(model=record.model, backend=record.backend, device=record.device, frames=len(board),
                       steps=record.steps, width=record.width, height=record.height,
                       load_seconds=round(loaded[0].seconds, 3), warmup_seconds=round(done[0].seconds, 3),
                       steady_seconds_per_frame=round(steady_seconds_per_frame([d.seconds for d in done]), 4),
                       stitch_seconds=round(stitch_seconds, 3), machine=_machine())


def _machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}"
