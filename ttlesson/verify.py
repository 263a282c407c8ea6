"""Which backend and device made each frame of a render folder, from its manifest (the lesson's Step 5)."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import FrameVerificationError
from .levers import lever
from .machine.boards import is_tt_device
from .presenting import Presentable
from .values import user_path


@dataclass(frozen=True)
class FrameOrigins(Presentable):
    out_dir: Path
    frames: dict[int, tuple[str, str]]  # index → (backend, device), for frames on disk as recorded
    frame_count: int
    damaged: tuple[int, ...] = ()  # recorded, but the PNG is gone or no longer has its recorded SHA-256
    problem: str | None = None  # one sentence about the first damaged frame and its fix

    @property
    def by_maker(self) -> dict[tuple[str, str], list[int]]:
        makers: dict[tuple[str, str], list[int]] = {}
        for index, maker in sorted(self.frames.items()):
            makers.setdefault(maker, []).append(index)
        return makers

    @property
    def not_on_tt(self) -> list[int]:
        return [index for index, (backend, device) in sorted(self.frames.items())
                if backend != "tt" and not is_tt_device(device)]

    @property
    def all_on_tt(self) -> bool:
        return bool(self.frames) and not self.not_on_tt

    def lines(self) -> list[str]:
        made = [f"{len(indices)} by {backend} on {device or 'an unrecorded device'} (frames {_ranges(indices)})"
                for (backend, device), indices in self.by_maker.items()]
        missing = self.frame_count - len(self.frames) - len(self.damaged)
        damaged = [f"{len(self.damaged)} recorded but missing or changed on disk "
                   f"(frames {_ranges(list(self.damaged))})"]
        return made + (damaged if self.damaged else []) + ([f"{missing} not made yet"] if missing > 0 else [])

    def verdict(self) -> str:
        if not self.frames:
            return "No frame has been made yet."
        if self.all_on_tt:
            return "Every frame was made on Tenstorrent hardware."
        if len(self.not_on_tt) == len(self.frames):
            return "No frame was made on Tenstorrent hardware."
        return f"{len(self.not_on_tt)} of {len(self.frames)} frames were not made on Tenstorrent hardware."

    def __str__(self) -> str:
        return "\n".join([f"{self.out_dir}: {len(self.frames)} of {self.frame_count} frames"]
                         + [f"  {line}" for line in self.lines()] + [self.verdict()])

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self.lines())
        return (f"<p>{html.escape(str(self.out_dir))}: {len(self.frames)} of {self.frame_count} frames</p>"
                f"<ul>{items}</ul><p><b>{html.escape(self.verdict())}</b></p>")


def verify_frames(out_dir: str | os.PathLike, expect: str | None = None) -> FrameOrigins:
    """Which backend and device made each frame of a render folder, from its manifest (the lesson's Step 5).

    Only frames whose PNG is on disk with its recorded SHA-256 count; the others are listed as damaged, with
    ``problem`` saying which and how to remake them. With ``expect="tt"``, raises ``FrameVerificationError``
    unless every frame is intact and was made on Tenstorrent hardware.
    """
    from . import manifest

    if expect not in (None, "tt"):
        raise FrameVerificationError(f"expect={expect!r} is not understood; use expect='tt' (or leave it out).")
    folder = user_path(out_dir, "out_dir=")
    book = manifest.load(folder)
    if book is None:
        raise FrameVerificationError(f"{folder} has no {manifest.MANIFEST_NAME}, so nothing records who made its "
                                     "frames; give the folder you rendered into (ttlesson render --out).")
    problems = manifest.check_frames(folder, book)
    damaged = tuple(problem.index for problem in problems)
    origins = FrameOrigins(folder, {i: (record.backend, record.device) for i, record in book.frames.items()
                                    if i not in damaged}, book.frame_count, damaged,
                           manifest.frames_problem_sentence(folder, problems) if problems else None)
    if expect == "tt" and origins.problem:
        raise FrameVerificationError(origins.problem)
    if expect == "tt" and not origins.all_on_tt:
        raise FrameVerificationError(_not_on_tt_message(origins))
    return origins


def _not_on_tt_message(origins: FrameOrigins) -> str:
    if not origins.frames:
        return f"{origins.out_dir} has no frames yet; render them with {lever('backend', 'tt')} first."
    (backend, device), indices = next((maker, indices) for maker, indices in origins.by_maker.items()
                                      if indices[0] in origins.not_on_tt)
    return (f"{len(origins.not_on_tt)} of {len(origins.frames)} frames in {origins.out_dir} were not made on "
            f"Tenstorrent hardware (frames {_ranges(origins.not_on_tt)}; e.g. {backend} on {device or 'unknown'}); "
            "render them again with --backend tt --overwrite on a machine with a Tenstorrent device.")


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0–2, 5"``."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ", ".join(f"{run[0]}–{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)
