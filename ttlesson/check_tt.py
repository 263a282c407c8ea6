"""``ttlesson check-tt``: one SD 1.4 frame on this machine's Tenstorrent chip, timed step by step, as a self-test.

It runs exactly the path ``ttlesson render --backend tt`` runs (device checks, tt-metal's package, one chip,
trace capture, one traced frame) and reports which device made the frame and how long each phase took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from . import models
from .backends import FrameRequest
from .errors import NoTTDeviceError
from .fileio import writable_folder, write_atomic
from .frames import encode_png
from .values import user_path

CHECK_PROMPT = "a photograph of the 1939 New York World's Fair at dusk, 35mm film"
CHECK_FILE = "check-tt.png"
NO_DEVICE_HERE = ("No Tenstorrent device found (the kernel driver lists no /dev/tenstorrent/* and ttnn sees no chip): "
                  "check-tt tests a Tenstorrent chip, so run it on a machine with a card and its driver (tt-smi -s "
                  "lists it); to make frames on this machine's CPU or GPU, use ttlesson render --backend torch.")


@dataclass(frozen=True)
class CheckResult:
    device: str
    package: str
    steps: int
    load_seconds: float
    capture_seconds: float
    frame_seconds: float
    path: Path

    def summary(self) -> str:
        return "\n".join([
            f"device: {self.device}",
            f"tt-metal package: {self.package}",
            f"load (device open, weights, device models): {self.load_seconds:.1f} s",
            f"compile + trace capture ({self.steps} steps): {self.capture_seconds:.1f} s",
            f"one frame (traced, 512x512): {self.frame_seconds:.2f} s",
            f"frame: {self.path}",
        ])


def run_check(out_dir: str | Path = ".", steps: int = 50, runtime=None) -> CheckResult:
    """Make one frame on the first Tenstorrent chip and write it to ``out_dir/check-tt.png``."""
    from .backends.tt import TTBackend

    out_dir = writable_folder(user_path(out_dir), "--out")  # before minutes of device work, not after
    spec = models.resolve("sd14")
    request = FrameRequest(prompt=CHECK_PROMPT, seed=0, steps=steps, guidance=spec.guidance, width=512, height=512)
    backend = TTBackend(spec, devices=1, runtime=runtime)
    try:
        backend.check_request(request)
    except NoTTDeviceError:
        raise NoTTDeviceError(NO_DEVICE_HERE) from None
    with backend:
        capture_seconds = backend.warm_up(request)
        started = time.perf_counter()
        image = backend.generate(request)
        frame_seconds = time.perf_counter() - started
        device, package, load_seconds = backend.device, backend.package, backend.timings.load_seconds
    path = write_atomic(out_dir / CHECK_FILE, encode_png(image))
    return CheckResult(device, package, steps, load_seconds, capture_seconds, frame_seconds, path)
