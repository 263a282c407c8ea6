"""The frame loop: a storyboard in, one PNG per prompt out, with a manifest, resumable and repeatable.

Reading ``render`` top to bottom is the algorithm:

1. settle the settings (the model's defaults, overridden by the caller's) and each frame's seed;
2. compare with what the output folder already holds: frames made with the same settings are kept, frames
   made with other settings stop the run unless ``overwrite`` is given (nothing is replaced by surprise);
3. load the model once, only if there is anything to make;
4. per frame: generate, write the PNG atomically, record it in the manifest, report progress.

With ``devices`` ("all" or a number) frames are made side by side: on Tenstorrent by one pipeline per chip in
this process, on torch by worker processes (``ttlesson.workers``). Each frame keeps its own seed and settings,
so the PNGs are the same as from one device; this process still writes every frame and the manifest.

Killing the process at any moment leaves only whole PNGs; the next run picks up where this one stopped.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from . import __version__, manifest, models
from . import storyboard as storyboard_mod
from .backends import Backend, FrameRequest, create, resolve_name
from .errors import FramesLostError, PromptTooLongWarning, SettingsChangedError, TTLessonError
from .fileio import remove_partials, sha256_file
from .frames import encode_png, store_frame
from .manifest import FrameRecord, Manifest
from .progress import (Event, FrameDone, FrameStarted, ModelLoaded, RenderFinished, RenderStarted, StepDone,
                       WarmedUp, WorkerStarted, steady_seconds_per_frame)
from .storyboard import MAX_SEED, Storyboard


@dataclass(frozen=True)
class RenderSettings:
    model: models.ModelSpec
    backend: str  # resolved backend name: "torch" or "tt"
    steps: int
    guidance: float
    width: int
    height: int
    seed: int  # base seed: frame i uses seed + i unless the storyboard gives it its own


@dataclass
class RenderResult:
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

    def summary(self) -> str:
        where = f" on {self.device}" if self.device else ""
        return (f"{len(self.manifest.frames)} frames in {manifest.frames_dir(self.out_dir)} "
                f"({len(self.made)} made{where}, {len(self.kept)} kept) in {self.seconds:.1f} s")

    def _repr_pretty_(self, printer, cycle) -> None:  # a notebook shows the summary, not every field
        printer.text(self.summary())


def render(
    storyboard: Storyboard | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    model: str = "sd14",
    backend: str | Backend = "auto",
    steps: int | None = None,
    size: int | str | tuple[int, int] | None = None,
    guidance: float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    device: str | None = None,
    devices: int | str | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> RenderResult:
    """Make one frame per storyboard prompt into ``out_dir/frames`` and record them in ``out_dir/manifest.json``.

    ``backend`` is a name (``auto``, ``torch``, ``tt``) or an already loaded ``Backend``, which is then reused
    and left open. Frames already made with the same settings are kept; ``overwrite`` allows remaking frames
    whose settings changed. ``devices`` ("all" or a number, default 1) spreads the frames over that many
    Tenstorrent chips, GPUs or CPU worker processes. ``on_event`` receives the events of ``ttlesson.progress``.
    A worker that dies loses only the frame it was making: the others are saved, then ``FramesLostError``
    says which frames to make by running again.
    """
    started = time.perf_counter()
    emit = on_event or (lambda event: None)
    board = storyboard if isinstance(storyboard, Storyboard) else storyboard_mod.load(storyboard)
    out_dir = Path(out_dir).expanduser()
    settings = _settings(model, backend, steps, size, guidance, seed)
    spread = _devices(devices, backend)
    wanted = [_wanted_record(board, i, settings) for i in range(len(board))]

    existing = manifest.load(out_dir) or Manifest()
    to_make, kept, stale = _plan(out_dir, existing, wanted, overwrite)
    book = Manifest(storyboard=board.name, frame_count=len(board), version=__version__,
                    frames={i: existing.frames[i] for i in kept})
    emit(RenderStarted(total=len(board), to_make=tuple(to_make), kept=tuple(kept), model=settings.model.name,
                       backend=settings.backend, steps=settings.steps, width=settings.width,
                       height=settings.height, out_dir=out_dir))
    recorder = _FrameRecorder(out_dir, book, wanted, board, to_make, emit)
    requests = [(index, _request(wanted[index])) for index in to_make]
    made_on = None
    if not to_make:
        _prepare_folder(out_dir, book, stale)
    elif settings.backend == "torch" and spread != 1:
        made_on = _render_with_workers(settings, spread, _device_arg(device), requests, recorder, stale)
    else:
        owned = not isinstance(backend, Backend)
        engine = create(settings.backend, settings.model, device=_device_arg(device), devices=spread) if owned \
            else backend
        try:
            made_on = _render_in_process(engine, requests, recorder, stale)
        finally:
            if owned:
                engine.close()

    result = RenderResult(out_dir=out_dir, manifest=book, made=recorder.made, kept=kept, device=made_on,
                          seconds=time.perf_counter() - started)
    emit(RenderFinished(made=tuple(recorder.made), kept=tuple(kept), seconds=result.seconds, device=made_on))
    return result


def _render_in_process(engine: Backend, requests: list[tuple[int, FrameRequest]], recorder: "_FrameRecorder",
                       stale: list[int]) -> str:
    """Make the frames with ``engine`` in this process: one after another, or on all its Tenstorrent chips."""
    for _, request in requests:
        engine.check_request(request)
    made_on = _load(engine, recorder.emit)
    recorder.warn_long_prompts(engine.count_tokens, engine.max_prompt_tokens)
    _prepare_folder(recorder.out_dir, recorder.book, stale)
    warm_up = engine.warm_up(requests[0][1])
    if warm_up:
        recorder.emit(WarmedUp(seconds=warm_up, what=engine.warm_up_note))
    if engine.chips > 1:
        recorder.slots = engine.chips
        for frame in engine.generate_many(requests, on_start=recorder.started):
            recorder.store(frame.index, encode_png(frame.image), frame.device, frame.seconds)
        return made_on
    for index, request in requests:
        recorder.started(index)
        frame_started = time.perf_counter()
        image = engine.generate(request, on_step=lambda step, total, i=index: recorder.emit(StepDone(i, step, total)))
        recorder.store(index, encode_png(image), made_on, time.perf_counter() - frame_started)
    return made_on


def _render_with_workers(settings: RenderSettings, spread: int | str, device: str | None,
                         requests: list[tuple[int, FrameRequest]], recorder: "_FrameRecorder",
                         stale: list[int]) -> str:
    """Make the frames in torch worker processes, one per GPU or several on the CPU; this process stores them."""
    from .workers import LostFrame, WorkerPool, parent_torch_threads, plan_workers

    torch_devices = plan_workers(spread, device, len(requests))
    if len(torch_devices) == 1:
        engine = create("torch", settings.model, device=torch_devices[0])
        try:
            return _render_in_process(engine, requests, recorder, stale)
        finally:
            engine.close()
    lost: list[LostFrame] = []
    with WorkerPool(settings.model, torch_devices, threads=parent_torch_threads()) as pool:
        started = time.perf_counter()
        for info in pool.start():
            recorder.emit(WorkerStarted(worker=info.name, device=info.device, pid=info.pid, seconds=info.seconds))
        recorder.emit(ModelLoaded(device=pool.device, seconds=time.perf_counter() - started, reports_steps=False,
                                  note=f"progress is per frame: {len(torch_devices)} worker processes make frames "
                                       "side by side"))
        recorder.warn_long_prompts(*_token_counter(pool, recorder.board, [index for index, _ in requests]))
        _prepare_folder(recorder.out_dir, recorder.book, stale)
        recorder.slots = len(torch_devices)
        for outcome in pool.run(requests, on_start=recorder.started):
            if isinstance(outcome, LostFrame):
                lost.append(outcome)
            else:
                recorder.store(outcome.index, outcome.png, outcome.device, outcome.seconds)
    if lost:
        raise FramesLostError(_lost_message(lost, recorder.made))
    return pool.device


def _token_counter(pool, board: Storyboard, indices: list[int]):
    """A count_tokens function and the encoder's limit, from one round trip to a worker."""
    texts = sorted({text for i in indices for text in (board[i].prompt, board[i].negative_prompt or "")})
    limit, counts = pool.token_counts(texts)
    return dict(zip(texts, counts)).__getitem__, limit


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
        self.slots = 1  # frames made at the same time
        self._started = 0
        self._durations: list[float] = []
        self._warmed_up: set[str] = set()

    def started(self, index: int, device: str = "") -> None:
        self._started += 1
        self.emit(FrameStarted(index=index, position=self._started, count=len(self.to_make),
                               prompt=self.board[index].prompt, device=device))

    def store(self, index: int, png: bytes, device: str, seconds: float) -> None:
        warmup = device not in self._warmed_up  # each device's first frame pays for caches, compilation, capture
        self._warmed_up.add(device)
        record = replace(self.wanted[index], device=device, seconds=round(seconds, 3), warmup=warmup)
        path = store_frame(self.out_dir, self.book, record, png)
        self.made.append(index)
        self._durations.append(seconds)
        per_frame = steady_seconds_per_frame(self._durations)
        remaining = len(self.to_make) - len(self.made)
        self.emit(FrameDone(index=index, position=len(self.made), count=len(self.to_make), path=path,
                            seconds=seconds, seconds_per_frame=per_frame,
                            eta_seconds=per_frame * remaining / self.slots, device=device))

    def warn_long_prompts(self, count_tokens: Callable[[str], int], limit: int) -> None:
        subset = Storyboard(frames=[self.board[i] for i in self.to_make])
        for position, tokens in storyboard_mod.long_prompts(subset, count_tokens, limit):
            warnings.warn(PromptTooLongWarning(
                f"Frame {self.to_make[position]}'s prompt is {tokens} tokens; the text encoder reads {limit}, "
                "so the end of it will be cut (shorten it to keep every word)."), stacklevel=4)


def _device_arg(device: str | None) -> str | None:
    return None if device in (None, "", "auto") else device


def _devices(devices: int | str | None, backend: str | Backend) -> int | str:
    """``devices`` checked: ``"all"`` or a whole number from 1 (None: 1)."""
    if devices is None:
        return 1
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if devices != "all" and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
        raise TTLessonError(f"Devices {devices!r} is not understood; give a whole number from 1 up, or all.")
    if devices != 1 and isinstance(backend, Backend):
        raise TTLessonError("devices= needs a backend name (auto, torch, tt), not a loaded backend, because it "
                            "opens its own devices; pass backend by name.")
    return devices


def parse_size(size: int | str | tuple[int, int]) -> tuple[int, int]:
    """``512``, ``"512"``, ``"768x512"`` or ``(768, 512)`` → (width, height), multiples of 8 from 64 up."""
    try:
        if isinstance(size, tuple):
            width, height = size
        elif isinstance(size, int) or str(size).isdigit():
            width = height = int(size)
        else:
            width, height = (int(part) for part in str(size).lower().split("x"))
    except ValueError:
        raise TTLessonError(f"Size {size!r} is not understood; give one number (512) or width x height "
                            "(768x512).") from None
    for value in (width, height):
        if value < 64 or value % 8:
            nearest = max(64, round(value / 8) * 8)
            raise TTLessonError(f"Size {value} does not work: Stable Diffusion needs multiples of 8 from 64 up "
                                f"(try {nearest}).")
    return width, height


def _settings(model, backend, steps, size, guidance, seed) -> RenderSettings:
    spec = models.resolve(model)
    backend_name = backend.name if isinstance(backend, Backend) else resolve_name(backend)
    width, height = parse_size(size) if size is not None else (spec.width, spec.height)
    steps = spec.steps if steps is None else steps
    guidance = spec.guidance if guidance is None else guidance
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 1000:
        raise TTLessonError(f"Steps {steps!r} is out of range; give a whole number from 1 to 1000 "
                            f"({spec.name} uses {spec.steps}).")
    if not 0 <= guidance <= 50:
        raise TTLessonError(f"Guidance {guidance!r} is out of range; give a number from 0 to 50 "
                            f"({spec.name} uses {spec.guidance}).")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise TTLessonError(f"Seed {seed!r} is out of range; give a whole number from 0 to {MAX_SEED}.")
    return RenderSettings(spec, backend_name, steps, float(guidance), width, height, seed)


def _wanted_record(board: Storyboard, index: int, settings: RenderSettings) -> FrameRecord:
    frame = board[index]
    return FrameRecord(index=index, prompt=frame.prompt, negative_prompt=frame.negative_prompt,
                       seed=board.seed_for(index, settings.seed), steps=settings.steps, guidance=settings.guidance,
                       width=settings.width, height=settings.height, model=settings.model.name,
                       backend=settings.backend)


def _plan(out_dir: Path, existing: Manifest, wanted: list[FrameRecord],
          overwrite: bool) -> tuple[list[int], list[int], list[int]]:
    """Split frames into (to make, kept as they are, stale files to delete); refuse to replace without overwrite."""
    folder = manifest.frames_dir(out_dir)
    to_make, kept, conflicts = [], [], []
    for want in wanted:
        png = folder / manifest.frame_filename(want.index)
        record = existing.frames.get(want.index)
        if not png.exists():
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
    emit(ModelLoaded(device=engine.device, seconds=time.perf_counter() - started, reports_steps=engine.reports_steps,
                     note=engine.progress_note))
    return engine.device


def _prepare_folder(out_dir: Path, book: Manifest, stale: list[int]) -> None:
    """Clear what a killed run left (partial files) and frames past the storyboard's end; write the manifest."""
    folder = manifest.frames_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    remove_partials(folder)
    for index in stale:
        (folder / manifest.frame_filename(index)).unlink(missing_ok=True)
    book.save(out_dir)


def _request(record: FrameRecord) -> FrameRequest:
    return FrameRequest(prompt=record.prompt, negative_prompt=record.negative_prompt, seed=record.seed,
                        steps=record.steps, guidance=record.guidance, width=record.width, height=record.height)
