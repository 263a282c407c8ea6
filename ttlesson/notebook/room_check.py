"""``ttlesson doctor --room``: the evening before a workshop, one table for the instructor.

For the room file in force (``TTLESSON_ROOM``) and N attendees: the room file, the Jupyter kernels registered,
the devices (free Tenstorrent chips, or the render service and its devices), the model in the shared cache, the
Tenstorrent kernel cache, the disk the attendees' frames need, and how many attendees an hour the room can take
through the lesson's frames. The time per frame is measured here (one frame) for the tiny model, taken from
tt-metal's published numbers for SD 1.4 on Tenstorrent cards (labelled as such), and otherwise not guessed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .. import env
from ..errors import TTLessonError
from ..setup.doctor import FAIL, OK, WARN, Check, DoctorReport, _existing_ancestor

ATTENDEE_STEPS = (3, 4, 6, 7, 8, 10)  # the notebooks that make frames (lesson.step_cost)
PNG_BYTES_PER_PIXEL = 3  # at most, as the render's own disk check counts


@dataclass(frozen=True)
class RoomPlan:
    frames_per_attendee: int
    seconds_per_frame: float | None
    how_measured: str
    devices: int

    def attendees_per_hour(self) -> float | None:
        if not self.seconds_per_frame or not self.frames_per_attendee:
            return None
        return self.devices * 3600 / (self.frames_per_attendee * self.seconds_per_frame)


def run(attendees: int = 20) -> DoctorReport:
    from . import lesson, settings

    started = time.perf_counter()
    try:
        cfg = settings.current()
    except TTLessonError as err:
        return DoctorReport([Check("room file", FAIL, str(err), "fix the value it names")], heading="room")
    frames = sum(lesson.frames_made_by(cfg, step) for step in ATTENDEE_STEPS)
    devices, tenstorrent, device_check = _devices(cfg)
    plan = _plan(cfg, frames, devices, tenstorrent)
    checks = [_room_file(cfg), _kernels(), device_check, _model_cache(cfg), _tt_kernel_cache(cfg, tenstorrent),
              _disk(cfg, attendees, frames), _capacity(plan, attendees)]
    return DoctorReport(checks, time.perf_counter() - started, heading="room")


def _room_file(cfg) -> Check:
    room = cfg.room
    shown = f"model {cfg.model.value}, steps {cfg.steps.value or 'the model’s own'}, size " \
            f"{cfg.size.value or 'the model’s own'}"
    if room is None:
        return Check("room file", WARN, f"TTLESSON_ROOM is not set: every attendee gets the defaults ({shown})",
                     "write a room file (docs/workshop.md) and set TTLESSON_ROOM in every attendee's kernel")
    demos = ", ".join(room.instructor_only) or "none"
    return Check("room file", OK, f"{room.path}: {shown}; film versions {room.film_keyframes} keyframes × "
                 f"{room.film_transition_frames} in-betweens; instructor-only cells: {demos}")


def _kernels() -> Check:
    try:
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        return Check("Jupyter kernels", WARN, "jupyter_client is not installed here",
                     "pip install 'ttlesson[notebooks]'")
    specs = KernelSpecManager().find_kernel_specs()
    names = ", ".join(sorted(specs)) or "none"
    return Check("Jupyter kernels", OK if specs else WARN, f"{len(specs)} registered: {names}",
                 "" if specs else "ttlesson kernel install (with the attendee's TTLESSON_* variables set)")


def _devices(cfg) -> tuple[int, bool, Check]:
    """How many devices make the room's frames, whether they are Tenstorrent chips, and the line that says so."""
    if cfg.server is not None:
        return _service(cfg)
    from ..machine import device_holders, read_kernel_driver

    cards, _ = read_kernel_driver(None)
    if not cards:
        return 1, False, Check("devices", WARN, "no Tenstorrent card and no render service: attendees' frames are made "
                        "on their own CPUs, one at a time each", "a room of laptops: use the tiny model")
    holders = device_holders()
    busy = f"; held now by {', '.join(f'{h.command} (pid {h.pid})' for h in holders)}" if holders else ""
    chips = sum(card.chips for card in cards)
    return chips, True, Check("devices", WARN if holders else OK, f"{len(cards)} Tenstorrent card(s), {chips} chip(s)"
                        f"{busy}", "stop those processes before the session" if holders else
                        "one kernel per card, or ttlesson serve for the room")


def _service(cfg) -> tuple[int, bool, Check]:
    from ..backends.remote import RemoteBackend, server_token
    from ..models import resolve

    url = cfg.server.value
    try:
        with RemoteBackend(resolve(str(cfg.model.value)), url, server_token()).connect() as client:
            status = client._status
    except TTLessonError as err:
        return 1, False, Check("render service", FAIL, str(err), f"start ttlesson serve on {url}'s host with the "
                               "room's model")
    from ..tenstorrent.boards import is_tt_device

    served = status.get("devices", [])
    tenstorrent = bool(served) and all(is_tt_device(str(device.get("device", ""))) for device in served)
    devices = max(1, len(served))
    return devices, tenstorrent, Check("render service", OK, f"{url} answers: {devices} device(s), models "
                          f"{', '.join(status.get('models', {})) or 'none'}")


def _model_cache(cfg) -> Check:
    from ..models import TINY_MODELS, resolve
    from ..setup.hf import cache_state

    spec = resolve(str(cfg.model.value))
    if spec.name in TINY_MODELS:
        from ..models.tiny import tiny_model_folder_if_built

        folder = tiny_model_folder_if_built(spec.name)
        if folder is None:
            return Check("model", WARN, f"{spec.name} is not built in {env.cache_root()} yet (each attendee "
                         "builds it, seconds)", f"ttlesson fetch {spec.name} (then share TTLESSON_CACHE read-only)")
        return Check("model", OK, f"{spec.name} built in {folder}")
    if spec.is_local:
        return Check("model", OK, f"a local folder: {spec.source}")
    state = cache_state(spec.source)
    if state != "complete":
        return Check("model", FAIL, f"{spec.source} is {state} in the Hugging Face cache: each attendee would "
                     f"download it ({spec.download_size}) on the day",
                     f"ttlesson fetch {spec.name}, then HF_HUB_OFFLINE=1 for the attendees")
    offline = "" if env.hub_offline() else " (set HF_HUB_OFFLINE=1 for the attendees: nothing is asked of the Hub)"
    return Check("model", OK if not offline else WARN, f"{spec.source} is in the Hugging Face cache{offline}")


def _tt_kernel_cache(cfg, tenstorrent: bool) -> Check:
    if cfg.server is not None or not tenstorrent:
        return Check("kernel cache", OK, "nothing to compile here (no Tenstorrent card, or the service compiles)")
    cache = env.path(env.TT_METAL_CACHE) or Path.home() / ".cache" / "tt-metal-cache"
    warm = cache.is_dir() and any(cache.iterdir())
    return Check("kernel cache", OK if warm else WARN, f"{cache} {'holds compiled kernels' if warm else 'is empty'}",
                 "" if warm else "render one frame on each card before the session (compiles for minutes once)")


def _disk(cfg, attendees: int, frames: int) -> Check:
    from ..inputs import parse_size
    from ..models import resolve

    spec = resolve(str(cfg.model.value))
    width, height = parse_size(cfg.size.value) if cfg.size.value else (spec.width, spec.height)
    need = attendees * frames * width * height * PNG_BYTES_PER_PIXEL
    folder = _existing_ancestor(cfg.workdir_path)
    free = shutil.disk_usage(folder).free
    detail = (f"{attendees} attendees × {frames} frames of {width}×{height}: up to {need / 1024 ** 3:.2f} GiB; "
              f"{free / 1024 ** 3:.1f} GiB free on the disk of {folder}")
    return Check("disk", OK if free > need else FAIL, detail, "" if free > need else
                 "free space there, or give the attendees work folders on a larger disk (the room file's workdir)")


def _plan(cfg, frames: int, devices: int, tenstorrent: bool) -> RoomPlan:
    from ..models import TINY_MODELS

    model = str(cfg.model.value)
    if model in TINY_MODELS and cfg.server is None:
        seconds = _one_tiny_frame(cfg)
        return RoomPlan(frames, seconds, "one frame measured here", devices)
    if model == "sd14" and tenstorrent:
        from ..tenstorrent.speeds import PUBLISHED

        steps = cfg.steps.value or 50
        return RoomPlan(frames, PUBLISHED["N150"] * steps / 50, "tt-metal's published N150 time per frame, "
                        "scaled by steps (not measured here)", devices)
    return RoomPlan(frames, None, "not measured: render one frame and read its seconds in the manifest", devices)


def _one_tiny_frame(cfg) -> float:
    import tempfile

    from ..render import render
    from ..storyboard import Frame, Storyboard

    with tempfile.TemporaryDirectory(prefix="ttlesson-room-check-") as folder:
        result = render(Storyboard(frames=[Frame("a fair at dusk"), Frame("a fair at dawn")]), folder,
                        **{key: value for key, value in cfg.render_kwargs.items() if key != "server"})
    return min(record.seconds for record in result.manifest.frames.values())  # the first includes warming up


def _capacity(plan: RoomPlan, attendees: int) -> Check:
    rate = plan.attendees_per_hour()
    if rate is None:
        return Check("attendees per hour", WARN, f"{plan.frames_per_attendee} frames per attendee; "
                     f"time per frame {plan.how_measured}", "")
    need = attendees / rate
    detail = (f"{rate:.0f} ({plan.frames_per_attendee} frames per attendee at {plan.seconds_per_frame:.2g} s a "
              f"frame, {plan.how_measured}, on {plan.devices} device(s)): {attendees} attendees' frames take "
              f"{need * 60:.0f} min")
    return Check("attendees per hour", OK if need <= 1 else WARN, detail,
                 "" if need <= 1 else "shrink the room file's film and steps, move heavy cells to instructor_only, "
                 "or add devices")
