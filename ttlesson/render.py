"""The frame loop: a storyboard in, one PNG per frame out, with a manifest, resumable and repeatable.

Reading ``render`` top to bottom is the algorithm:

1. check every argument and settle the settings (the model's defaults, overridden by the caller's), the frames
   (one per storyboard prompt, its keyframes, plus ``transition_frames`` in-betweens per gap: ``ttlesson.walk``),
   each frame's seed and noise, and the scheduler and numerics (``precision``: the fast path this machine allows,
   ``backends.torch.precision``) it is made with; refuse what the backend cannot make (no device, a size it does
   not run) and a frame too big for this machine's memory, all before anything is written or loaded;
2. check the output folder (it can be created and written, ``frames/`` is a folder, ``manifest.json`` a file,
   the disk has room) and lock it for this run: a second render into the same folder is refused;
3. compare with what the output folder already holds: frames made with the same settings are kept, frames
   made with other settings stop the run unless ``overwrite`` is given (nothing is replaced by surprise);
4. load the model once, only if there is anything to make;
5. only then make the folder ready (remove what a killed run left and frames past the storyboard's end, write
   the manifest), so a model that fails to load leaves the folder as it was;
6. warm up (the tt backend compiles and captures its device trace);
7. one loop over the frames as the engine makes them (``generate_many``: one after another, or side by side):
   match each in-between's colours to its two keyframes' at its weight (``colour="lab"``, ``ttlesson.walk``;
   the keyframes are then made first), write the PNG atomically, record it in the manifest, report progress.

With ``devices`` ("all" or a number) frames are made side by side: on Tenstorrent by one pipeline per chip in
this process, on torch by worker processes (``ttlesson.backends.workers``, a pool with the same ``generate_many``
as a backend). Each frame keeps its own seed and settings, so the PNGs are the same as from one device; this
process still writes every frame and the manifest.

Killing the process at any moment leaves only whole PNGs; the next run picks up where this one stopped.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Literal, cast

from . import manifest, models
from . import storyboard as storyboard_mod
from . import walk as walk_mod
from .backends import Backend, BackendName, FrameRequest, LostFrame, create, resolve_name
from .backends.torch import precision as accel
from .env import __version__
from .errors import FramesLostError, PromptTooLongWarning, SettingsChangedError, TTLessonError
from .fileio import folder_lock, os_error_sentence, remove_partials, sha256_file, writable_folder
from .frames import encode_png, store_frame
from .inputs import MOST_DEVICES, parse_size, real_number, shown, user_path, whole_number, yes_or_no
from .manifest import FrameRecord, Manifest
from .models import schedulers
from .presenting import Presentable
from .progress import (
    Event,
    FrameDone,
    FrameStarted,
    ModelLoaded,
    RenderFinished,
    RenderStarted,
    StepDone,
    Waiting,
    WarmedUp,
    WorkerStarted,
    steady_seconds_per_frame,
)
from .storyboard import MAX_SEED, Storyboard
from .walk import COLOUR_MATCHES, EASINGS, MAX_TRANSITION_FRAMES, SEED_MODES, ColourMatch, Easing, SeedMode


@dataclass(frozen=True)
class RenderSettings:
    model: models.ModelSpec
    backend: Literal["torch", "tt"]  # the resolved backend name
    steps: int
    guidance: float
    width: int
    height: int
    seed: int  # base seed: frame i uses seed + i unless the storyboard gives it its own
    scheduler: str = "pndm"  # ttlesson.models.schedulers
    precision: str = "float32"  # ttlesson.backends.torch.precision


@dataclass(frozen=True)
class WalkSettings:
    """How the storyboard's keyframes become frames (``ttlesson.walk``) and how consistent the frames are."""

    transition_frames: int | None = None  # in-betweens per gap unless a keyframe sets its own (None: storyboard's)
    easing: Easing | None = None  # None: the storyboard's, else linear
    seed_mode: SeedMode = "per-frame"
    noise_mix: float = 0.3  # mixed seed mode: the share of each keyframe's own noise
    colour: ColourMatch | Literal[""] = ""  # "lab": match each in-between's colours to its keyframes'; "": leave them


@dataclass
class RenderResult(Presentable):
    out_dir: Path
    manifest: Manifest
    made: list[int]
    kept: list[int]
    device: str | None  # None when every frame was already made and no model was loaded
    seconds: float

    @property
    def frame_paths(self) -> list[Path]:
        return [self.out_dir / record.file for _, record in sorted(self.manifest.frames.items())]

    @property
    def manifest_path(self) -> Path:
        return manifest.manifest_path(self.out_dir)

    def __str__(self) -> str:
        where = f" on {self.device}" if self.device else ""
        return (f"{len(self.manifest.frames)} frames in {manifest.frames_dir(self.out_dir)} "
                f"({len(self.made)} made{where}, {len(self.kept)} kept) in {self.seconds:.1f} s")

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "manifest": str(self.manifest_path), "made": self.made,
                "kept": self.kept, "device": self.device, "seconds": round(self.seconds, 3),
                "frames": [str(path) for path in self.frame_paths]}


def render(
    storyboard: Storyboard | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    model: str = "sd14",
    backend: BackendName | Backend = "auto",
    steps: int | None = None,
    size: int | str | tuple[int, int] | None = None,
    guidance: float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    device: str | None = None,
    devices: int | str | None = None,
    scheduler: str | None = None,
    precision: accel.Precision = "auto",
    compile: bool = False,
    transition_frames: int | None = None,
    easing: Easing | None = None,
    seed_mode: SeedMode = "per-frame",
    noise_mix: float | None = None,
    colour: ColourMatch | bool | None = None,
    server: str | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> RenderResult:
    """Make the storyboard's frames into ``out_dir/frames`` and record them in ``out_dir/manifest.json``.

    Each storyboard prompt is a keyframe; ``transition_frames`` K (the storyboard's own, else 0) adds K
    in-between frames in each gap that walk from one keyframe to the next (``ttlesson.walk``), spaced by
    ``easing`` (``linear``, ``ease-in-out``); a keyframe's own ``transition_frames`` wins for its gap. Frames are
    numbered in order: n keyframes give n + (n - 1) K frames. ``seed_mode`` is ``per-frame`` (keyframe k uses
    ``seed + k``), ``shared`` (every keyframe uses ``seed``) or ``mixed`` (the noise of ``seed`` shared by all
    keyframes plus ``noise_mix``, default 0.3, of each one's own). ``colour="lab"`` matches each in-between's colours to
    its two keyframes' at its weight (``ttlesson.walk``); keyframes keep their own.

    ``backend`` is a name (``auto``, ``torch``, ``tt``) or an already loaded ``Backend``, which is then reused
    and left open. Frames already made with the same settings are kept; ``overwrite`` allows remaking frames
    whose settings changed. ``devices`` ("all" or a number, default 1) spreads the frames over that many
    Tenstorrent chips, GPUs or CPU worker processes. ``scheduler`` (``ttlesson.models.schedulers``; None: the model's
    own) and ``precision`` (``backends.torch.precision``; ``auto``: the fastest path this machine has for the model) and
    ``compile`` (torch.compile the UNet) change the pixels, so they are recorded and compared like the seed.
    ``server`` (default: ``TTLESSON_SERVER``) is a render service's URL (``ttlesson serve``): its devices make
    the pixels, this process writes the frames and the manifest as always (``ttlesson.backends.remote``).
    ``on_event`` receives the events of ``ttlesson.progress``.
    A worker that dies loses only the frame it was making: the others are saved, then ``FramesLostError``
    says which frames to make by running again.
    """
    started = time.perf_counter()
    emit = _event_sink(on_event)
    # 1. every argument checked, the settings settled, and what the backend cannot make refused
    board = storyboard_mod.checked(storyboard) if isinstance(storyboard, Storyboard) else \
        storyboard_mod.load(storyboard)
    overwrite = yes_or_no(overwrite, "overwrite")
    remote = _remote_engine(server, model, backend, devices, device, precision)
    settings = _settings(model, remote or backend, steps, size, guidance, seed, scheduler, precision, compile,
                         _device_arg(device))
    options = _walk_settings(transition_frames, easing, seed_mode, noise_mix, colour)
    devices = _devices(devices, backend)
    out_dir = _out_dir(out_dir)
    wanted = wanted_records(board, settings, options)
    _check_walk(settings, wanted)
    engine = remote or (backend if isinstance(backend, Backend) else _engine(settings, devices, device))
    owned = engine is not backend
    try:
        _check_backend(engine, wanted)
        # 2. the output folder: usable, and ours alone until the run ends
        _check_layout(out_dir)
        with folder_lock(out_dir, "wait for that render to finish (or stop it), or choose another --out."):
            # 3. what the folder already holds: frames to make, frames kept, stale files
            existing = manifest.load(out_dir) or Manifest()
            to_make, kept, stale = _plan(out_dir, existing, wanted, overwrite)
            book = Manifest(storyboard=board.name, frame_count=len(wanted), version=__version__,
                            frames={i: existing.frames[i] for i in kept})
            _check_room(out_dir, settings, len(to_make))
            emit(RenderStarted(total=len(wanted), to_make=tuple(to_make), kept=tuple(kept),
                               model=settings.model.name, backend=settings.backend, steps=settings.steps,
                               width=settings.width, height=settings.height, out_dir=out_dir))
            recorder = _FrameRecorder(out_dir, book, wanted, board, to_make, emit)
            made_on = None
            # 4. the model, loaded only if there is anything to make (a worker pool starts no more workers than
            #    frames: a pool of one is the plain backend)
            if to_make:
                if owned:
                    engine = engine.for_frames(len(to_make))
                engine.log_folder = engine.log_folder or out_dir  # e.g. tt-metal's log next to the frames
                engine.on_wait = lambda index, why: emit(Waiting(index=index, why=why))
                made_on = _load(engine, emit)
                recorder.warn_long_prompts(engine.count_tokens, engine.max_prompt_tokens)
            # 5. the folder made ready (partial files of a killed run and frames past the end removed, the
            #    manifest written) only now: a model that fails to load leaves the folder as it was
            _prepare_folder(out_dir, book, stale)
            if to_make:
                # with colour coherence the keyframes come first: each in-between's colours need its two keyframes
                order = sorted(to_make, key=lambda i: wanted[i].keyframe is None) if options.colour else to_make
                requests = [(index, _request(wanted[index])) for index in order]
                # 6. the one-off work (TT: compile and capture the device trace)
                warm_up = engine.warm_up(requests[0][1])
                if warm_up:
                    emit(WarmedUp(seconds=warm_up, what=engine.warm_up_note))
                # 7. the frames, side by side where the engine runs several at once
                recorder.parallel = engine.parallel
                lost: list[LostFrame] = []
                for made in engine.generate_many(requests, on_start=recorder.started, on_step=recorder.stepped):
                    if isinstance(made, LostFrame):
                        lost.append(made)
                    else:
                        recorder.store(made.index, made.png(), made.device, made.seconds)
                if lost:
                    raise FramesLostError(_lost_message(lost, recorder.made))
    finally:
        if engine is not None and owned:
            engine.close()

    result = RenderResult(out_dir=out_dir, manifest=book, made=recorder.made, kept=kept, device=made_on,
                          seconds=time.perf_counter() - started)
    emit(RenderFinished(made=tuple(recorder.made), kept=tuple(kept), seconds=result.seconds, device=made_on))
    return result


def _event_sink(on_event) -> Callable[[Event], None]:
    if on_event is not None and not callable(on_event):
        raise TTLessonError(f"on_event= must be a function that takes each progress event (or None), not "
                            f"{shown(on_event)}.")
    return on_event or (lambda event: None)


def _engine(settings: RenderSettings, devices: int | str, device: str | None) -> Backend:
    """The engine that will make the frames, created but not loaded: a backend, or torch worker processes."""
    if settings.backend == "torch" and devices != 1:
        from .backends.workers import WorkerPool

        return WorkerPool(settings.model, devices, _device_arg(device), precision=settings.precision,
                          size=(settings.width, settings.height))
    return create(settings.backend, settings.model, device=_device_arg(device), devices=devices,
                  precision=settings.precision)


def _remote_engine(server, model, backend, devices, device, precision):
    """The render service's devices (``server``, else ``TTLESSON_SERVER``), connected; None for a local render."""
    from .backends.remote import RemoteBackend, server_token, server_url

    url = server_url(server)
    if url is None or isinstance(backend, Backend):  # a loaded backend (a service's too) is used as given
        return None
    if device is not None:
        raise TTLessonError(f"--device {device} picks a device of this machine, but --server {url} makes frames on "
                            "the service's devices; leave --device out (or --server, to render here).")
    spec = models.resolve(model)
    if spec.name not in models.REGISTRY:
        raise TTLessonError(f"--model {model} is a folder on this machine; a render service holds its own models: "
                            "give the name of one it holds (e.g. tiny or sd14), or leave --server out.")
    count = None if devices in (None, "all") else _devices(devices, "auto")
    engine = RemoteBackend(spec, url, server_token(), devices=count).connect()
    if precision not in ("auto", engine.precision):
        engine.close()
        raise TTLessonError(f"--precision {precision}: the service at {url} makes {spec.name} in "
                            f"{engine.precision}; leave --precision out, or leave --server out to render here.")
    return engine


def _check_backend(engine: Backend, wanted: list[FrameRecord]) -> None:
    """What the backend cannot make (no device, a size it does not run, a frame too big for this machine's
    memory), refused before the folder is touched or the model loads."""
    for request in {_request(replace(record, prompt="", negative_prompt=None, seed=0, to_prompt=None,
                                     to_negative_prompt=None, to_seed=None, weight=0.0, noise_base=None))
                    for record in wanted}:
        engine.check_request(request)
        engine.check_scheduler(request)


def _lost_message(lost, made: list[int]) -> str:
    died = sorted({frame.worker for frame in lost if frame.worker})
    indices = ", ".join(str(frame.index) for frame in sorted(lost, key=lambda f: f.index))
    who = f"worker {', '.join(died)} died" if died else "the workers died"
    what = f"Frame {indices} was" if len(lost) == 1 else f"Frames {indices} were"
    return (f"{what} not made because {who} (the {len(made)} other frames are saved); "
            "run the same command again to make them.")


class _FrameRecorder:
    """Stores frames as they arrive, in any order, and reports them: the only writer of the render folder."""

    def __init__(self, out_dir: Path, book: Manifest, wanted: list[FrameRecord], board: Storyboard,
                 to_make: list[int], emit: Callable[[Event], None]):
        self.out_dir, self.book, self.wanted, self.board, self.to_make = out_dir, book, wanted, board, to_make
        self.emit = emit
        self.made: list[int] = []
        self.parallel = 1  # frames made at the same time
        self._started = 0
        self._durations: list[float] = []
        self._warmed_up: set[str] = set()
        self._keyframes: dict = {}  # frame index → a keyframe as an image, once known (colour coherence)
        self._colour = any(record.colour_match for record in wanted)
        self._waiting: list[tuple] = []  # in-betweens that arrived before their keyframes, matched once they have

    def stepped(self, index: int, step: int, total: int) -> None:
        self.emit(StepDone(index, step, total))

    def started(self, index: int, device: str = "") -> None:
        self._started += 1
        self.emit(FrameStarted(index=index, position=self._started, count=len(self.to_make),
                               prompt=_label(self.wanted[index]), device=device))

    def store(self, index: int, png: bytes, device: str, seconds: float) -> None:
        """Record frame ``index`` (an in-between's colours first matched to its two keyframes', when asked)."""
        record = self.wanted[index]
        if not record.colour_match:
            self._store(index, png, device, seconds)
            if self._colour and record.keyframe is not None:
                self._keyframes[index] = _decode(png)
                waiting, self._waiting = self._waiting, []
                for item in waiting:
                    self.store(*item)
            return
        assert record.pair is not None, "only an in-between's colours are matched"
        first, second = (self._keyframe_image(self.keyframe_frames[k]) for k in record.pair)
        if first is None or second is None:  # a keyframe is still being made on another device
            self._waiting.append((index, png, device, seconds))
            return
        from .walk import match_colours_between

        self._store(index, encode_png(match_colours_between(_decode(png), first, second, record.weight)), device,
                    seconds)

    def _keyframe_image(self, index: int):
        if index not in self._keyframes and index not in self.to_make:  # kept from an earlier run
            self._keyframes[index] = _decode((manifest.frames_dir(self.out_dir) /
                                              manifest.frame_filename(index)).read_bytes())
        return self._keyframes.get(index)

    def _store(self, index: int, png: bytes, device: str, seconds: float) -> None:
        warmup = device not in self._warmed_up  # each device's first frame pays for caches, compilation, capture
        self._warmed_up.add(device)
        record = replace(self.wanted[index], device=device, seconds=round(seconds, 3), warmup=warmup)
        try:
            path = store_frame(self.out_dir, self.book, record, png)
        except OSError as err:
            why = os_error_sentence(err, err.filename or self.out_dir)
            raise TTLessonError(f"Frame {index} could not be saved: {why} (the {len(self.made)} frames made before "
                                "it are saved; run the same command again to make the rest).") from err
        self.made.append(index)
        self._durations.append(seconds)
        per_frame = steady_seconds_per_frame(self._durations)
        remaining = len(self.to_make) - len(self.made)
        self.emit(FrameDone(index=index, position=len(self.made), count=len(self.to_make), path=path,
                            seconds=seconds, seconds_per_frame=per_frame,
                            eta_seconds=per_frame * remaining / self.parallel, device=device))

    def warn_long_prompts(self, count_tokens: Callable[[str], int], limit: int) -> None:
        """Warn once per keyframe whose prompt the encoder will cut, naming the keyframe's frame."""
        keyframes: dict[int, int] = {}
        for index in self.to_make:
            record = self.wanted[index]
            for keyframe in (record.pair or (record.keyframe,)):
                assert keyframe is not None, "a frame is a keyframe or an in-between of two"
                keyframes.setdefault(keyframe, self.keyframe_frames[keyframe])
        subset = Storyboard(frames=[self.board[k] for k in keyframes])
        try:
            long = storyboard_mod.long_prompts(subset, count_tokens, limit)
        except NotImplementedError:  # a backend that cannot count its encoder's tokens (Backend.count_tokens)
            return
        for position, tokens in long:
            warnings.warn(PromptTooLongWarning(
                f"Frame {list(keyframes.values())[position]}'s prompt is {tokens} tokens; the text encoder reads "
                f"{limit}, so the end of it will be cut (shorten it to keep every word)."), stacklevel=4)

    @property
    def keyframe_frames(self) -> dict[int, int]:
        """Storyboard index → frame index of each keyframe."""
        return {record.keyframe: record.index for record in self.wanted if record.keyframe is not None}


def _label(record: FrameRecord) -> str:
    """What a frame shows, for the progress display: its prompt, or the walk between two."""
    if record.pair is None:
        return record.prompt
    return f"{record.prompt} → {record.to_prompt} ({record.weight:.2f})"


def _decode(png: bytes):
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB")


def _device_arg(device: str | None) -> str | None:
    return None if device in (None, "", "auto") else device


def _devices(devices: int | str | None, backend: str | Backend) -> int | str:
    """``devices`` checked: ``"all"`` or a whole number from 1 (None: 1); numpy integers count."""
    if devices is None:
        return 1
    if isinstance(devices, str) and devices.strip().isascii() and devices.strip().isdigit():
        devices = int(devices)
    if isinstance(devices, numbers.Integral) and not isinstance(devices, bool):
        devices = int(devices)
    if devices != "all" and not (isinstance(devices, int) and not isinstance(devices, bool)
                                 and 1 <= devices <= MOST_DEVICES):
        raise TTLessonError(f"Devices {shown(devices)} is not understood; give a whole number from 1 to "
                            f"{MOST_DEVICES}, or all.")
    if devices != 1 and isinstance(backend, Backend):
        raise TTLessonError("devices= needs a backend name (auto, torch, tt), not a loaded backend, because it "
                            "opens its own devices; pass backend by name.")
    return devices


def _settings(model, backend, steps, size, guidance, seed, scheduler, precision, compile,
              device) -> RenderSettings:
    if not isinstance(model, (str, os.PathLike)):
        raise TTLessonError(f"model= must be a model name (sd14, sd35-large, tiny) or a folder, not {shown(model)}.")
    if not isinstance(backend, (str, Backend)):
        raise TTLessonError(f"backend= must be a backend name (auto, torch, tt) or a loaded Backend, "
                            f"not {shown(backend)}.")
    spec = models.resolve(model)
    backend_name = cast(Literal["torch", "tt"],
                        backend.name if isinstance(backend, Backend) else resolve_name(backend))
    width, height = parse_size(size) if size is not None else (spec.width, spec.height)
    scheduler = schedulers.resolve(scheduler, spec)
    hint = f" ({spec.name} uses {{}})"
    default_steps = schedulers.default_steps(spec, scheduler)
    steps = default_steps if steps is None else whole_number(steps, "Steps", 1, schedulers.max_steps(spec),
                                                                   hint.format(default_steps))
    guidance = spec.guidance if guidance is None else \
        real_number(guidance, "Guidance", 0, 50, hint.format(spec.guidance))
    seed = whole_number(seed, "Seed", 0, MAX_SEED)
    if isinstance(backend, Backend):
        numerics = backend.precision
    else:
        numerics = accel.resolve_precision(precision, spec, accel.device_type(backend_name, device), compile=compile)
    return RenderSettings(spec, backend_name, steps, float(guidance), width, height, seed, scheduler, numerics)


def _out_dir(out_dir) -> Path:
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir).strip():
        raise TTLessonError(f"out_dir= must be a folder path, not {shown(out_dir)}.")
    return user_path(out_dir)


def _check_layout(out_dir: Path) -> None:
    """The folder can be written, and what it holds has the shape of a render folder; one sentence if not."""
    writable_folder(out_dir, "--out", fills=True)
    frames = manifest.frames_dir(out_dir)
    if frames.is_symlink() and not frames.exists():
        raise TTLessonError(f"{frames} is a symbolic link that leads nowhere (or to itself); remove it or choose "
                            "another --out.")
    if frames.exists() and not frames.is_dir():
        raise TTLessonError(f"{frames} is a file where ttlesson keeps the frames folder; move it away or choose "
                            "another --out.")
    if frames.is_dir():
        writable_folder(frames, "The frames folder")
    if manifest.manifest_path(out_dir).is_dir():
        raise TTLessonError(f"{manifest.manifest_path(out_dir)} is a folder where ttlesson keeps the manifest "
                            "file; move it away or choose another --out.")


def _check_room(out_dir: Path, settings: RenderSettings, count: int) -> None:
    """Refuse up front when the disk cannot hold the frames (a PNG is at most about 3 bytes a pixel)."""
    need = count * settings.width * settings.height * 3 + 1024 ** 2 if count else 0
    if need:
        writable_folder(out_dir, "--out", need_bytes=need)


def _walk_settings(transition_frames, easing, seed_mode, noise_mix, colour) -> WalkSettings:
    """The walk and consistency arguments checked: one sentence naming the value and what to give instead."""
    if transition_frames is not None:
        transition_frames = whole_number(transition_frames, "Transition frames", 0, MAX_TRANSITION_FRAMES,
                                         " (in-between frames per pair of keyframes)")
    if easing is not None and easing not in EASINGS:
        raise TTLessonError(f"Easing {shown(easing)} is not known; give one of {', '.join(EASINGS)}.")
    if seed_mode not in SEED_MODES:
        raise TTLessonError(f"Seed mode {shown(seed_mode)} is not known; give one of {', '.join(SEED_MODES)}.")
    if noise_mix is not None and seed_mode != "mixed":
        raise TTLessonError("A noise mix applies to seed mode mixed only; add --seed-mode mixed "
                            "(seed_mode='mixed') or leave --noise-mix out.")
    mix = 0.3 if noise_mix is None else real_number(noise_mix, "Noise mix", 0, 1,
                                                    " (the share of each keyframe's own noise)")
    if colour is True:
        colour = "lab"
    if colour not in (None, False, "", *COLOUR_MATCHES):
        raise TTLessonError(f"Colour coherence {shown(colour)} is not known; give {' or '.join(COLOUR_MATCHES)} "
                            "(or leave it out).")
    return WalkSettings(transition_frames, easing, seed_mode, float(mix), colour or "")


def wanted_records(board: Storyboard, settings: RenderSettings, options: WalkSettings = WalkSettings()
                   ) -> list[FrameRecord]:
    """Every frame's record before it is made: the keyframes, the in-betweens of the walk, their noise, colour."""
    keys = [_keyframe_record(board, k, settings, options) for k in range(len(board))]
    easing = options.easing or board.easing or "linear"
    records = []
    for step in walk_mod.plan(board.transition_gaps(options.transition_frames), easing):
        if step.keyframe is not None:
            records.append(replace(keys[step.keyframe], index=step.index))
        else:
            assert step.pair is not None, "a walk's frame is a keyframe or an in-between of two"
            first, second = (keys[k] for k in step.pair)
            records.append(replace(first, index=step.index, keyframe=None, pair=step.pair, weight=step.weight,
                                   to_prompt=second.prompt, to_negative_prompt=second.negative_prompt,
                                   to_seed=second.seed))
    if options.colour:  # each in-between matched to its two keyframes (named, with a digest of their identities)
        at = {record.keyframe: record for record in records if record.keyframe is not None}
        for position, record in enumerate(records):
            if record.pair is not None:
                first, second = (at[k] for k in record.pair)
                identity = json.dumps([first.identity(), second.identity()], sort_keys=True, ensure_ascii=False)
                reference = (f"frames {first.index} and {second.index} "
                             f"({hashlib.sha256(identity.encode()).hexdigest()[:16]})")
                records[position] = replace(record, colour_match=options.colour, colour_reference=reference)
    return records


def _keyframe_record(board: Storyboard, keyframe: int, settings: RenderSettings, options: WalkSettings
                     ) -> FrameRecord:
    frame = board[keyframe]
    if options.seed_mode == "shared":
        seed = frame.seed if frame.seed is not None else settings.seed
    else:
        seed = board.seed_for(keyframe, settings.seed)
    mixed = options.seed_mode == "mixed"
    request = FrameRequest(prompt=frame.prompt, negative_prompt=frame.negative_prompt, seed=seed, steps=settings.steps,
                           guidance=settings.guidance, width=settings.width, height=settings.height,
                           scheduler=settings.scheduler, noise_base=settings.seed if mixed else None,
                           noise_mix=options.noise_mix if mixed else 0.0)
    return FrameRecord(index=keyframe, keyframe=keyframe, model=settings.model.name, backend=settings.backend,
                       precision=settings.precision, **asdict(request))


def _check_walk(settings: RenderSettings, wanted: list[FrameRecord]) -> None:
    """In-betweens and mixed noise feed the model latents and embeddings of SD 1.x's shape; refuse them elsewhere."""
    if settings.model.family == "sd1":
        return
    if any(record.pair or record.noise_base is not None for record in wanted):
        raise TTLessonError(f"Keyframe walks and --seed-mode mixed run on SD 1.x models (sd14, tiny); "
                            f"{settings.model.name} makes keyframes only: leave --transition-frames and --seed-mode "
                            "mixed out.")


def _plan(out_dir: Path, existing: Manifest, wanted: list[FrameRecord],
          overwrite: bool) -> tuple[list[int], list[int], list[int]]:
    """Split frames into (to make, kept as they are, stale files to delete); refuse to replace without overwrite."""
    folder = manifest.frames_dir(out_dir)
    to_make, kept, conflicts = [], [], []
    for want in wanted:
        png = folder / manifest.frame_filename(want.index)
        record = existing.frames.get(want.index)
        if not png.exists() and not png.is_symlink():
            to_make.append(want.index)
        elif not png.is_file():
            conflicts.append((want.index, "is not a file ttlesson made (a folder or a broken link)"))
            to_make.append(want.index)
        elif record is None:
            conflicts.append((want.index, "is not in the manifest (a file ttlesson did not make here)"))
            to_make.append(want.index)
        elif record.identity() != want.identity():
            conflicts.append((want.index, "was made with other settings (" + ", ".join(record.differences(want)) + ")"))
            to_make.append(want.index)
        elif record.sha256 != sha256_file(png):
            conflicts.append((want.index, "was changed after ttlesson made it"))
            to_make.append(want.index)
        else:
            kept.append(want.index)
    stale = [index for index in manifest.frame_indices(folder) if index >= len(wanted)]
    if not overwrite and (conflicts or stale):
        raise SettingsChangedError(_conflict_message(folder, conflicts, stale))
    return to_make, kept, stale


def _conflict_message(folder: Path, conflicts: list[tuple[int, str]], stale: list[int]) -> str:
    if conflicts:
        index, why = conflicts[0]
        others = f" (and {len(conflicts) - 1} more frames)" if len(conflicts) > 1 else ""
        problem = f"{folder / manifest.frame_filename(index)} {why}{others}"
    else:
        problem = (f"{folder} holds {len(stale)} frames beyond the storyboard's end "
                   f"(from {manifest.frame_filename(stale[0])})")
    return f"{problem}; pass --overwrite (overwrite=True) to replace them, or choose another output folder."


def _load(engine: Backend, emit: Callable[[Event], None]) -> str:
    started = time.perf_counter()
    engine.load()
    for info in engine.started_workers:
        emit(WorkerStarted(worker=info.name, device=info.device, pid=info.pid, seconds=info.seconds))
    emit(ModelLoaded(device=engine.device, seconds=time.perf_counter() - started, reports_steps=engine.reports_steps,
                     note=engine.progress_note))
    return engine.device


def _prepare_folder(out_dir: Path, book: Manifest, stale: list[int]) -> None:
    """Clear what a killed run left (partial files) and frames past the storyboard's end; write the manifest."""
    folder = manifest.frames_dir(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_partials(folder)
        for index in stale:
            (folder / manifest.frame_filename(index)).unlink(missing_ok=True)
        book.save(out_dir)
    except OSError as err:
        why = os_error_sentence(err, err.filename or out_dir)
        raise TTLessonError(f"The render folder could not be prepared: {why} (no frame was changed).") from err


def _request(record: FrameRecord) -> FrameRequest:
    """The request a frame is made from: every field of ``FrameRequest``, as its record stores it."""
    return FrameRequest(**{item.name: getattr(record, item.name) for item in fields(FrameRequest)})
