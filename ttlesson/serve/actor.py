"""One device's model, loaded once, making frame after frame: the class behind each Ray actor of the service.

The service starts one per device: a Tenstorrent card (Ray's ``TTNPU`` resource; Ray sets ``TT_VISIBLE_DEVICES``
to the card it gave the actor, so the tt backend opens that card alone), a GPU (``num_gpus=1``, Ray sets
``CUDA_VISIBLE_DEVICES``), or CPU slots. SD 3.5 Large's actor is a *group*: it holds all of a node's cards
(``devices="all"``; ``TT_VISIBLE_DEVICES`` lists them) and its backend opens them as one mesh. The actor is the
same backend a local render uses, so a frame is the same frame: same request, same model, same precision, same
thread count, same bytes.

``make`` is a generator (a Ray streaming method): the step events as the backend reports them, then the PNG.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time

from .. import env
from ..backends.base import FrameRequest
from ..errors import TTLessonError, describe

DEVICE_KINDS = ("tt", "gpu", "cpu")
# Step events go out at most this often: each one is a Ray object and a line to the client, and one per step of
# a fast frame cost a tenth of its time (a tiny frame's 10 steps take 0.4 s on one core).
STEP_EVENT_SECONDS = 0.25


class FrameMaker:
    def __init__(self, model: str, kind: str, name: str, threads: int | None = None, precision: str = "auto",
                 tt_runtime: str | None = None, devices: int | str = 1):
        started = time.perf_counter()
        if kind == "tt":
            # tt-metal's kernel cache is per process: actors sharing one would rebuild each other's kernels
            cards = env.text(env.VISIBLE_DEVICES) or "all"
            os.environ.setdefault(env.TT_METAL_CACHE, str(env.cache_root() / "tt-metal-cache" / f"card-{cards}"))
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.name, self.kind = name, kind
        self.backend = _backend(model, kind, precision, tt_runtime, devices)
        self.backend.load()
        self._warm: set[tuple] = set()
        self._lock = threading.Lock()  # one frame at a time; describe and count_tokens answer meanwhile
        self.info = {"name": name, "kind": kind, "model": model, "device": _device_name(self.backend.device, devices),
                     "backend": self.backend.name, "precision": self.backend.precision,
                     "host": socket.gethostname(), "pid": os.getpid(), "load_seconds": time.perf_counter() - started,
                     "max_prompt_tokens": self.backend.max_prompt_tokens,
                     "visible_devices": os.environ.get(env.VISIBLE_DEVICES)}

    def describe(self) -> dict:
        return self.info

    def warm_up(self, steps: int, size: str | None = None) -> dict:
        """Compile and capture for frames of ``steps`` steps (and ``size``) now, before any client waits for it;
        the seconds it took and where the kernels are kept go into ``info``."""
        from ..inputs import parse_size

        spec = self.backend.spec
        width, height = parse_size(size) if size else (spec.width, spec.height)
        request = FrameRequest("warm-up", seed=0, steps=steps, guidance=spec.guidance, width=width, height=height)
        with self._lock:
            started = time.perf_counter()
            self.backend.check_request(request)
            self.backend.warm_up(request)
            self._warm.add(_warm_key(request))
        self.info = {**self.info, "warm_up_seconds": round(time.perf_counter() - started, 1),
                     "warm_for": f"{steps} steps, {width}x{height}", "kernel_cache": os.environ.get(env.TT_METAL_CACHE)}
        return self.info

    def count_tokens(self, texts: list[str]) -> list[int] | None:
        """Each text's tokens, or None where the backend cannot count them (``Backend.count_tokens``)."""
        with self._lock:
            try:
                return [self.backend.count_tokens(text) for text in texts]
            except NotImplementedError:
                return None

    def make(self, request: FrameRequest):
        """Yield ``("step", step, total)`` as the frame is made, then ``("done", png, seconds)``, or
        ``("refused", sentence)`` for a request this device cannot make (the actor goes on serving)."""
        events: queue.Queue = queue.Queue()
        worker = threading.Thread(target=self._make, args=(request, events), daemon=True)
        worker.start()
        while True:
            event = events.get()
            yield event
            if event[0] != "step":
                break
        worker.join()

    def _make(self, request: FrameRequest, events: queue.Queue) -> None:
        with self._lock:
            try:
                self.backend.check_request(request)
                self.backend.check_scheduler(request)
                started = time.perf_counter()
                if _warm_key(request) not in self._warm:
                    self.backend.warm_up(request)
                    self._warm.add(_warm_key(request))
                image = self.backend.generate(request, on_step=_every(STEP_EVENT_SECONDS, events.put))
                from ..frames import encode_png

                png = image if isinstance(image, bytes) else encode_png(image)
                events.put(("done", png, time.perf_counter() - started))
            except TTLessonError as err:
                events.put(("refused", describe(err, debug=False)))
            except BaseException as err:  # the service reports it; this actor keeps serving
                events.put(("failed", f"{type(err).__name__}: {err}"))


def _warm_key(request: FrameRequest) -> tuple:
    """What a warm-up (a TT device's compile and trace capture) is good for: frames of these settings."""
    return (request.steps, request.guidance, request.width, request.height, request.scheduler)


def _device_name(device: str, devices: int | str) -> str:
    """The device as the status shows it: a Tenstorrent group's also names the cards Ray gave it."""
    if devices != "all":
        return device
    return f"{device} (tt group: cards {env.text(env.VISIBLE_DEVICES) or 'all'})"


def _backend(model: str, kind: str, precision: str, tt_runtime: str | None, devices: int | str):
    from ..backends import create
    from ..models import resolve

    spec = resolve(model)
    if kind == "tt":
        if tt_runtime:  # "module:function" returning a Runtime: a test's stand-in device layer
            from ..backends.tt import create_tt
            from ..backends.tt.processes import load_factory

            return create_tt(spec, devices=devices, runtime=load_factory(tt_runtime)())
        return create("tt", spec, devices=devices)
    return create("torch", spec, device="cuda" if kind == "gpu" else "cpu", precision=precision)


def _every(seconds: float, put):
    """An ``on_step`` that passes ``("step", step, total)`` on at most once per ``seconds``."""
    last = [time.monotonic()]

    def on_step(step: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= seconds:
            last[0] = now
            put(("step", step, total))
    return on_step
