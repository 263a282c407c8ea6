"""``ttlesson check-tt``: first contact with a Tenstorrent machine, made easy to diagnose.

It makes tt-metal's own demo frame through exactly the path ``ttlesson render --backend tt`` takes: the demo's
first prompt (read from the checkout's ``demo/input_data.json``), its fixed seed 174, 50 steps, guidance 7.5,
512×512, on the first chip. The frame is saved under a demo-style name next to where the demo writes its own
(``input_data_1_512x512_ttnn.png``); when that demo image is there, the two are compared (PSNR, mean absolute
difference) and a verdict is printed: ttlesson post-processes the output as the demo does, so on the same
machine the two should be identical.

tt-metal's log is on (``TT_LOGGER_LEVEL=info`` unless set) and goes to a file the report names;
``TT_METAL_OPERATION_TIMEOUT_SECONDS`` turns a hung dispatch into an error instead of a wait forever. The report
ends in a block to paste into a bug report: ttnn (version, location), the tt-metal checkout (commit), the board,
the mesh, and the load, compile, capture and frame times.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ... import env, models
from ...errors import NoTTDeviceError
from ...fileio import writable_folder, write_atomic
from ...frames import encode_png
from ...inputs import user_path
from ...presenting import Presentable
from ..base import FrameRequest

DEMO_SEED = 174  # tt-metal's demo seeds its noise once with torch.manual_seed(174)
DEMO_STEPS = 50
DEMO_GUIDANCE = 7.5
# The first prompt of tt-metal's SD 1.4 demo input (demo/input_data.json), used when the checkout has no such file.
DEMO_FIRST_PROMPT = ("oil painting frame of Breathtaking mountain range with a clear river running through it, "
                     "surrounded by tall trees and misty clouds, serene, peaceful, mountain landscape, high detail")
CHECK_NAME = "ttlesson_1_512x512_ttnn.png"  # next to the demo's input_data_1_512x512_ttnn.png
DEMO_NAMES = ("input_data_1_512x512_ttnn.png", "input_data_0_512x512_ttnn.png")  # newer releases count from 1
LOG_NAME = "check-tt-tt-metal.log"
OPERATION_TIMEOUT_SECONDS = "300"  # a traced 50-step frame takes seconds; minutes without an answer is a hang
IDENTICAL_DB = math.inf
MATCH_DB = 40.0  # ttlesson's own thresholds for the verdict, see docs/tt-backend.md
CLOSE_DB = 25.0
NO_DEVICE_HERE = ("No Tenstorrent device found (the kernel driver lists no /dev/tenstorrent/* and ttnn sees no chip): "
                  "check-tt tests a Tenstorrent chip, so run it on a machine with a card and its driver (tt-smi -s "
                  "lists it); to make frames on this machine's CPU or GPU, use ttlesson render --backend torch.")


@dataclass(frozen=True)
class Comparison:
    demo_image: Path
    psnr_db: float  # inf when identical
    mean_abs_diff: float  # in 8-bit levels
    differing_pixels: float  # fraction of pixel channels that differ

    @property
    def verdict(self) -> str:
        if self.psnr_db == IDENTICAL_DB:
            return "identical to the demo's image: this machine makes tt-metal's demo frame, bit for bit"
        measured = f"PSNR {self.psnr_db:.1f} dB, mean difference {self.mean_abs_diff:.2f} levels"
        if self.psnr_db >= MATCH_DB:
            return f"matches the demo's image ({measured}): the same computation, rounded slightly differently"
        if self.psnr_db >= CLOSE_DB:
            return (f"close to the demo's image but not the same ({measured}): check that the demo ran with its "
                    "own prompt, 50 steps and the same tt-metal checkout")
        return (f"differs from the demo's image ({measured}): if the demo ran with its defaults on this machine, "
                "something in the path is wrong; paste this report into a bug report")

    @property
    def ok(self) -> bool:
        return self.psnr_db >= CLOSE_DB


@dataclass(frozen=True)
class CheckResult(Presentable):
    device: str
    package: str
    ttnn: str
    tt_metal: str
    board: str
    mesh: str
    prompt: str
    seed: int
    steps: int
    load_seconds: float
    compile_seconds: float
    capture_seconds: float
    frame_seconds: float
    path: Path
    log_file: Path | None
    comparison: Comparison | None

    @property
    def ok(self) -> bool:
        return self.comparison is None or self.comparison.ok

    def __str__(self) -> str:
        if self.comparison is None:
            compared = (f"no demo image to compare with (looked for {' or '.join(DEMO_NAMES)} next to {self.path.name}"
                        "); run tt-metal's demo there and check again")
        else:
            compared = f"{self.comparison.verdict} ({self.comparison.demo_image})"
        return "\n".join([
            f"frame: {self.path}",
            f"compared: {compared}",
            f"tt-metal's log: {self.log_file or 'not captured (ttnn was imported before check-tt could set it)'}",
            "",
            "--- paste into a bug report ---",
            f"ttnn: {self.ttnn}",
            f"tt-metal: {self.tt_metal}",
            f"tt-metal package: {self.package}",
            f"board: {self.board}",
            f"mesh: {self.mesh}",
            f"device: {self.device}",
            f"frame: demo prompt, seed {self.seed}, {self.steps} steps, 512x512",
            f"load (device open, weights, device models): {self.load_seconds:.1f} s",
            f"compile (first run of the loop, kernels built): {self.compile_seconds:.1f} s",
            f"trace capture ({self.steps} steps): {self.capture_seconds:.1f} s",
            f"one frame (traced): {self.frame_seconds:.2f} s",
            "---",
        ])

    def to_dict(self) -> dict:
        data = super().to_dict()
        if self.comparison is not None:
            data["comparison"]["verdict"] = self.comparison.verdict
        return data


def run_check(out_dir: str | os.PathLike = ".", steps: int = DEMO_STEPS, runtime=None,
              demo_image: str | os.PathLike | None = None) -> CheckResult:
    """Make the demo's first frame on the first Tenstorrent chip, save it in ``out_dir`` and compare it with the
    demo's own image when there is one (``demo_image``, else the demo's file name in ``out_dir`` or
    ``$TT_METAL_HOME``, where the demo writes when run from the checkout)."""
    from .sd14 import TTSD14Backend

    folder = writable_folder(user_path(out_dir), "--out", fills=True)  # before minutes of device work, not after
    os.environ.setdefault(env.LOGGER_LEVEL, "info")
    os.environ.setdefault(env.OPERATION_TIMEOUT, OPERATION_TIMEOUT_SECONDS)
    spec = models.resolve("sd14")
    request = FrameRequest(prompt=demo_prompt(), seed=DEMO_SEED, steps=steps, guidance=DEMO_GUIDANCE, width=512,
                           height=512)
    backend = TTSD14Backend(spec, devices=1, runtime=runtime)
    try:
        backend.check_request(request)
    except NoTTDeviceError as err:
        raise NoTTDeviceError(NO_DEVICE_HERE) from err
    backend.log_folder, backend.log_name = folder, LOG_NAME
    with backend:
        backend.warm_up(request)
        pipeline = backend._pipelines[0]
        compile_seconds, capture_seconds = pipeline.compile_seconds, pipeline.capture_seconds
        started = time.perf_counter()
        image = backend.generate(request)
        frame_seconds = time.perf_counter() - started
        device = backend.device
    path = write_atomic(folder / CHECK_NAME, encode_png(image))
    return CheckResult(
        device=device, package=backend.package, ttnn=_ttnn_text(), tt_metal=_tt_metal_text(),
        board=_board_text(), mesh=_mesh_text(backend), prompt=request.prompt, seed=DEMO_SEED, steps=steps,
        load_seconds=backend.timings.load_seconds, compile_seconds=compile_seconds, capture_seconds=capture_seconds,
        frame_seconds=frame_seconds, path=path, log_file=backend.log_file,
        comparison=compare(path, find_demo_image(folder, demo_image)))


def demo_prompt() -> str:
    """The first prompt of the demo's input file in the tt-metal checkout, else the one the demo ships with."""
    from ...errors import TTMetalNotFoundError
    from ...tenstorrent.checkout import find_sd14

    try:
        text = (find_sd14().folder / "demo" / "input_data.json").read_text(encoding="utf-8")
        return str(json.loads(text)[0]["prompt"])
    except (TTMetalNotFoundError, OSError, ValueError, LookupError, TypeError):
        return DEMO_FIRST_PROMPT


def find_demo_image(folder: Path, given: str | os.PathLike | None) -> Path | None:
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            from ...errors import TTLessonError

            raise TTLessonError(f"--demo-image {path} is not a file; give the input_data_1_512x512_ttnn.png that "
                                "tt-metal's demo wrote, or leave --demo-image out.")
        return path
    places = [folder, *filter(None, [env.tt_metal_home()])]
    return next((place / name for place in places for name in DEMO_NAMES if (place / name).is_file()), None)


def compare(ours: Path, demo: Path | None) -> Comparison | None:
    """PSNR and mean absolute difference of two 8-bit RGB images (None when there is no demo image)."""
    if demo is None:
        return None
    import numpy as np
    from PIL import Image

    with Image.open(ours) as first, Image.open(demo) as second:
        a = np.asarray(first.convert("RGB"), dtype=np.float64)
        b = np.asarray(second.convert("RGB"), dtype=np.float64)
    if a.shape != b.shape:
        return Comparison(demo, 0.0, 255.0, 1.0)
    mse = float(((a - b) ** 2).mean())
    psnr = IDENTICAL_DB if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
    return Comparison(demo, psnr, float(np.abs(a - b).mean()), float((a != b).mean()))


def _ttnn_text() -> str:
    from ...machine import ttnn_install_info

    info = ttnn_install_info()
    return f"{info.version or 'version unknown'} at {info.location}" if info.installed else "not installed"


def _tt_metal_text() -> str:
    from ...tenstorrent.versions import checkout_info

    checkout = checkout_info()
    return str(checkout) if checkout else "no checkout found"


def _board_text() -> str:
    from ...machine import detect

    report = detect(ttnn=False)
    cards = ", ".join(map(str, report.cards)) or "no card listed by the kernel driver or tt-smi"
    return f"{cards}; MESH_DEVICE={report.mesh_device or 'none'}"


def _mesh_text(backend) -> str:
    system = backend.system
    shape = "×".join(map(str, backend.mesh_shape))
    return f"{system}; opened {shape}" if system else f"opened {shape}"
