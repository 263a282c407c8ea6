"""Measure this machine: model load, the warm-up frame, steady seconds per frame, and stitching.

A benchmark is a real render of a few frames into a scratch folder, timed through the progress events, then
a real stitch. Numbers are reported, never asserted: speed targets and results live in docs/benchmarks.md.
"""

from __future__ import annotations

import hashlib
import html
import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import env
from ..env import __version__
from ..fileio import sha256_file, write_atomic
from ..inputs import whole_number
from ..manifest import frames_dir
from ..presenting import Presentable
from ..progress import FrameDone, ModelLoaded, steady_seconds_per_frame
from ..render import render
from ..storyboard import Storyboard
from ..storyboard import load as load_storyboard
from ..tenstorrent.boards import is_tt_device
from ..video import stitch

if TYPE_CHECKING:
    from ..backends import BackendName
    from ..backends.torch.precision import Precision


@dataclass(frozen=True)
class BenchResult(Presentable):
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
    scheduler: str = ""
    precision: str = ""
    ttlesson: str = __version__
    machine: str = ""

    @property
    def frames_per_second(self) -> float:
        return 1 / self.steady_seconds_per_frame if self.steady_seconds_per_frame else 0.0

    def __str__(self) -> str:
        return (f"{self.model} on {self.device} ({self.backend}, {self.precision}), {self.steps} steps "
                f"({self.scheduler}), {self.width}×{self.height}: "
                f"load {self.load_seconds:.1f} s, first frame {self.warmup_seconds:.2f} s, then "
                f"{self.steady_seconds_per_frame:.2f} s/frame ({self.frames_per_second:.2f} frames/s); "
                f"stitching {self.frames} frames {self.stitch_seconds:.2f} s")

    def to_dict(self) -> dict:
        return {**super().to_dict(), "frames_per_second": round(self.frames_per_second, 4)}


def run(model: str = "tiny", frames: int = 4, backend: BackendName = "auto", device: str | None = None,
        steps: int | None = None, size: int | str | None = None, scheduler: str | None = None,
        precision: Precision = "auto", compile: bool = False) -> BenchResult:
    """Render ``frames`` prompts of the World's Fair storyboard in a scratch folder and time each part."""
    frames = whole_number(frames, "--frames", 2, 1000, " (a warm-up frame and at least one steady one)")
    prompts = load_storyboard("worlds-fair").frames
    board = Storyboard(frames=[prompts[i % len(prompts)] for i in range(frames)], name="bench")
    loaded: list[ModelLoaded] = []
    done: list[FrameDone] = []

    def listen(event) -> None:
        if isinstance(event, ModelLoaded):
            loaded.append(event)
        elif isinstance(event, FrameDone):
            done.append(event)

    with tempfile.TemporaryDirectory(prefix="ttlesson-bench-") as scratch:
        result = render(board, scratch, model=model, backend=backend, device=device, steps=steps, size=size,
                        scheduler=scheduler, precision=precision, compile=compile, on_event=listen)
        started = time.perf_counter()
        stitch(scratch, Path(scratch) / "bench.mp4")
        stitch_seconds = time.perf_counter() - started
    record = result.manifest.frames[0]
    return BenchResult(model=record.model, backend=record.backend, device=record.device, frames=len(board),
                       steps=record.steps, width=record.width, height=record.height,
                       load_seconds=round(loaded[0].seconds, 3), warmup_seconds=round(done[0].seconds, 3),
                       steady_seconds_per_frame=round(steady_seconds_per_frame([d.seconds for d in done]), 4),
                       stitch_seconds=round(stitch_seconds, 3), scheduler=record.scheduler,
                       precision=record.precision, machine=_machine())


MODEL_NAMES = {"sd14": "SD 1.4", "sd35-large": "SD 3.5 Large"}


@dataclass(frozen=True)
class ScalingPoint:
    devices: int
    frames_per_second: float  # after each device's warm-up frame
    seconds: float  # the whole render, model loads included
    device: str
    label: str


@dataclass(frozen=True)
class Scaling:
    points: list[ScalingPoint]
    identical: bool  # every device count made byte-identical frames
    model: str = ""
    width: int = 0
    height: int = 0
    steps: int = 0
    measured_at: str = ""  # when, in this machine's local time (YYYY-MM-DD HH:MM)

    def to_dict(self) -> dict:
        return asdict(self)  # the points too: asdict recurses into lists of dataclasses

    @classmethod
    def from_dict(cls, data: dict) -> Scaling:
        return cls(**{**data, "points": [ScalingPoint(**point) for point in data["points"]]})

    @property
    def verdict(self) -> str:
        """What this measurement says: the most devices against one, and why on this machine; then whether the
        frames were the same bytes."""
        frames = ("The frames were byte-identical for every device count." if self.identical
                  else "The frames differed between device counts: spreading frames changed them.")
        return f"{self.comparison} {frames}"

    @property
    def comparison(self) -> str:
        """``2 workers made frames 2.8× slower than 1 here: on a CPU the workers share the same cores.``"""
        one = _one_device(self.points)
        most = max(self.points, key=lambda point: point.devices, default=None)
        if one is None or most is None or most.devices == 1 or not most.frames_per_second:
            return "Too few frames were made to compare device counts."
        pace = _pace(most, one)
        unit, why = _devices_and_why(one.device, faster=pace.endswith("faster than"))
        return f"{most.devices} {unit} made frames {pace} 1 here: {why}."

    @property
    def work(self) -> str:
        """What one frame is: ``SD 1.4, 512×512, 50 steps`` (rates of different work never share an axis)."""
        name = MODEL_NAMES.get(self.model, f"{self.model} model")
        return f"{name}, {self.width}×{self.height}, {self.steps} steps"

    def _repr_html_(self) -> str:
        one = _one_device(self.points)
        rows = "".join(f"<tr><td>{p.devices}</td><td>{p.frames_per_second:.3f}</td><td>{_against(p, one)}</td>"
                       f"<td>{p.seconds:.1f}</td><td>{html.escape(p.device)}</td></tr>" for p in self.points)
        return (f"<p>Each frame: {self.work}.</p><table><tr><th>devices</th><th>frames/s (steady)</th>"
                f"<th>against 1 device</th><th>render s (with loads)</th><th>device</th></tr>{rows}</table>"
                f"<p>{html.escape(self.verdict)}</p>")


def _one_device(points: list[ScalingPoint]) -> ScalingPoint | None:
    """The measurement on one device, the others' yardstick (None when it made too few frames for a rate)."""
    return next((point for point in points if point.devices == 1 and point.frames_per_second), None)


def _against(point: ScalingPoint, one: ScalingPoint | None) -> str:
    """The table's cell: ``2.8× slower than 1``, or a dash for the one device itself or a rate not measured."""
    return f"{_pace(point, one)} 1" if one and point is not one and point.frames_per_second else "–"


def _pace(point: ScalingPoint, one: ScalingPoint) -> str:
    """``2.8× slower than``, ``1.9× faster than`` or ``about as fast as`` (within 5 %); both rates above 0."""
    ratio = point.frames_per_second / one.frames_per_second
    if 0.95 <= ratio <= 1.05:
        return "about as fast as"
    return f"{ratio:.1f}× faster than" if ratio > 1 else f"{1 / ratio:.1f}× slower than"


def _devices_and_why(device: str, faster: bool) -> tuple[str, str]:
    """What the devices are called on this machine, and why more of them were faster or not."""
    if is_tt_device(device) or device.startswith("cuda"):
        unit = "chips" if is_tt_device(device) else "GPUs"
        return unit, (f"each of the {unit} makes its own frames" if faster
                      else f"the host (text encoder, PNG writing) is the limit here, not the {unit}")
    return "workers", ("one worker left some of this CPU's cores idle" if faster
                       else "on a CPU the workers share the same cores")


def device_counts() -> list[int]:
    """The device counts worth measuring here: 1, 2, 4 … up to every Tenstorrent chip or GPU; on a CPU, 1 and 2."""
    from ..machine import detect

    report = detect()
    total = report.total_chips if report.tt_device else len(report.gpus)
    if total < 2:
        return [1, 2]  # CPU (or one device): two workers share it; the measurement shows what that costs
    counts = [1]
    while counts[-1] * 2 < total:
        counts.append(counts[-1] * 2)
    return counts + [total]


def scaling(model: str = "tiny", counts: list[int] | None = None, frames: int = 6, backend: BackendName = "auto",
            steps: int | None = None, size: int | str | None = None, on_event=None) -> Scaling:
    """Frames per second against number of devices, measured by real renders of the same frames.

    ``on_event`` receives each render's progress events (one render per device count, in order).
    """
    prompts = load_storyboard("worlds-fair").frames
    board = Storyboard(frames=[prompts[i % len(prompts)] for i in range(frames)], name="scaling")
    points, digests = [], []
    for count in counts or device_counts():
        finished: list[float] = []

        def listen(event, finished=finished) -> None:
            if isinstance(event, FrameDone):
                finished.append(time.perf_counter())
            if on_event is not None:
                on_event(event)

        with tempfile.TemporaryDirectory(prefix="ttlesson-scaling-") as scratch:
            started = time.perf_counter()
            result = render(board, scratch, model=model, backend=backend, devices=count, steps=steps, size=size,
                            on_event=listen)
            seconds = time.perf_counter() - started
            digests.append([sha256_file(path) for path in sorted(frames_dir(Path(scratch)).glob("*.png"))])
        steady = finished[count - 1:] if len(finished) > count else finished
        rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 and steady[-1] > steady[0] else 0.0
        points.append(ScalingPoint(devices=count, frames_per_second=round(rate, 4), seconds=round(seconds, 2),
                                   device=result.device or "", label=f"measured here ({result.device})"))
    record = result.manifest.frames[0]
    return Scaling(points=points, identical=all(d == digests[0] for d in digests), model=record.model,
                   width=record.width, height=record.height, steps=record.steps,
                   measured_at=time.strftime("%Y-%m-%d %H:%M"))


# --- a measurement kept for the next run with the same settings on this machine ------------------------------

def scaling_key(model: str, counts: list[int], frames: int, backend: str, steps: int | None,
                size: int | str | None) -> dict:
    """What decides a scaling measurement: its settings, and the machine and software that made it."""
    return {"model": model, "counts": list(counts), "frames": frames, "backend": backend, "steps": steps,
            "size": None if size is None else str(size), "host": platform.node(), "machine": _machine(),
            "ttlesson": __version__}


def _saved_scaling_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return env.cache_root() / "measurements" / f"scaling-{digest}.json"


def saved_scaling(key: dict) -> Scaling | None:
    """The measurement saved by ``save_scaling`` for ``key``, or None (none saved, or one that cannot be read)."""
    try:
        data = json.loads(_saved_scaling_path(key).read_text(encoding="utf-8"))
        return Scaling.from_dict(data["scaling"]) if data.get("key") == key else None
    except (OSError, ValueError, TypeError, KeyError):
        return None


def save_scaling(key: dict, result: Scaling) -> Path | None:
    """Keep ``result`` in ttlesson's cache for the next run with the same ``key``; None when the cache cannot be
    written (the measurement is still shown, only not kept)."""
    path = _saved_scaling_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, json.dumps({"key": key, "scaling": result.to_dict()}, indent=1))
    except OSError:
        return None


def _machine() -> str:
    import os

    return (f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")
