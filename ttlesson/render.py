"""The frame loop: a storyboard in, one PNG per prompt out, with a manifest, resumable and repeatable.

Reading ``render`` top to bottom is the algorithm:

1. settle the settings (the model's defaults, overridden by the caller's) and each frame's seed;
2. compare with what the output folder already holds: frames made with the same settings are kept, frames
   made with other settings stop the run unless ``overwrite`` is given (nothing is replaced by surprise);
3. load the model once, only if there is anything to make;
4. per frame: generate, write the PNG atomically, record it in the manifest, report progress.

Killing the process at any moment leaves only whole PNGs; the next run picks up where this one stopped.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from . import __version__, manifest, models
from . import storyboard as storyboard_mod
from .backends import Backend, FrameRequest, create, resolve_name
from .errors import PromptTooLongWarning, SettingsChangedError, TTLessonError
from .fileio import remove_partials, sha256_file, sha256_of, write_partial
from .manifest import FrameRecord, Manifest
from .progress import (Event, FrameDone, FrameStarted, ModelLoaded, RenderFinished, RenderStarted, StepDone,
                       steady_seconds_per_frame)
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
    on_event: Callable[[Event], None] | None = None,
) -> RenderResult:
    """Make one frame per storyboard prompt into ``out_dir/frames`` and record them in ``out_dir/manifest.json``.

    ``backend`` is a name (``auto``, ``torch``, ``tt``) or an already loaded ``Backend``, which is then reused
    and left open. Frames already made with the same settings are kept; ``overwrite`` allows remaking frames
    whose settings changed. ``on_event`` receives the progress events of ``ttlesson.progress``.
    """
    started = time.perf_counter()
    emit = on_event or (lambda event: None)
    board = storyboard if isinstance(storyboard, Storyboard) else storyboard_mod.load(storyboard)
    out_dir = Path(out_dir).expanduser()
    settings = _settings(model, backend, steps, size, guidance, seed)
    wanted = [_wanted_record(board, i, settings) for i in range(len(board))]

    existing = manifest.load(out_dir) or Manifest()
    to_make, kept, stale = _plan(out_dir, existing, wanted, overwrite)
    book = Manifest(storyboard=board.name, frame_count=len(board), version=__version__,
                    frames={i: existing.frames[i] for i in kept})
    emit(RenderStarted(total=len(board), to_make=tuple(to_make), kept=tuple(kept), model=settings.model.name,
                       backend=settings.backend, steps=settings.steps, width=settings.width,
                       height=settings.height, out_dir=out_dir))
    made: list[int] = []
    made_on = None
    owned = bool(to_make) and not isinstance(backend, Backend)
    engine = create(settings.backend, settings.model, device=_device_arg(device)) if owned else backend
    try:
        if to_make:
            made_on = _load(engine, emit)
            _warn_long_prompts(board, to_make, engine)
        _prepare_folder(out_dir, book, stale)
        durations: list[float] = []
        for position, index in enumerate(to_make, start=1):
            emit(FrameStarted(index=index, position=position, count=len(to_make), prompt=board[index].prompt))
            frame_started = time.perf_counter()
            image = engine.generate(_request(wanted[index]),
                                    on_step=lambda step, total, i=index: emit(StepDone(i, step, total)))
            durations.append(time.perf_counter() - frame_started)
            path = _store_frame(out_dir, book, wanted[index], image, made_on, durations[-1], warmup=position == 1)
            made.append(index)
            per_frame = steady_seconds_per_frame(durations)
            emit(FrameDone(index=index, position=position, count=len(to_make), path=path, seconds=durations[-1],
                           seconds_per_frame=per_frame, eta_seconds=per_frame * (len(to_make) - position)))
    finally:
        if owned:
            engine.close()

    result = RenderResult(out_dir=out_dir, manifest=book, made=made, kept=kept, device=made_on,
                          seconds=time.perf_counter() - started)
    emit(RenderFinished(made=tuple(made), kept=tuple(kept), seconds=result.seconds, device=made_on))
    return result


def _device_arg(device: str | None) -> str | None:
    return None if device in (None, "", "auto") else device


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
    emit(ModelLoaded(device=engine.device, seconds=time.perf_counter() - started, reports_steps=engine.reports_steps))
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


def _store_frame(out_dir: Path, book: Manifest, want: FrameRecord, image, device: str, seconds: float,
                 warmup: bool) -> Path:
    """PNG to a partial file, manifest entry, then rename: a finished PNG always has its manifest entry."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    path = manifest.frames_dir(out_dir) / manifest.frame_filename(want.index)
    partial = write_partial(path, data)
    book.frames[want.index] = replace(want, device=device, seconds=round(seconds, 3), warmup=warmup,
                                      sha256=sha256_of(data))
    book.save(out_dir)
    os.replace(partial, path)
    return path


def _warn_long_prompts(board: Storyboard, indices: list[int], engine: Backend) -> None:
    limit = engine.max_prompt_tokens
    subset = Storyboard(frames=[board[i] for i in indices])
    for position, tokens in storyboard_mod.long_prompts(subset, engine.count_tokens, limit):
        warnings.warn(PromptTooLongWarning(
            f"Frame {indices[position]}'s prompt is {tokens} tokens; the text encoder reads {limit}, "
            "so the end of it will be cut (shorten it to keep every word)."), stacklevel=3)
