"""What to expect: seconds per frame per board, and how long a render will take, said before it takes long.

Per board, the seconds per frame tt-metal publishes for its own SD 1.4 demo (after a run's first frame), with what
they mean on that board: the demo uses one chip whatever the board. The lesson's own slower figures are kept as a
note, not as a rival column; what a machine really does, step 8 measures. A render whose first denoising step
says the whole run will take more than a few minutes (the real SD 1.4 on a CPU: minutes per frame) gets a
sentence with the estimate and how to stop or shorten it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from ..presenting import how_to_stop, lever

# Seconds per 512×512 SD 1.4 frame at 50 steps, after the first frame (the traced loop's steady state).
PUBLISHED = {"N150": 4.83, "P150": 3.15}  # Wormhole n150, Blackhole p150
PUBLISHED_SOURCE = "tt-metal's own performance table for its SD 1.4 demo"
SD14_WORK = "SD 1.4, 512×512, 50 steps"
LONG_RUN_SECONDS = 300.0  # estimates above this get the warning


@dataclass(frozen=True)
class BoardExpectation:
    board: str
    measured_on: str  # the board whose figure tt-metal publishes (a key of PUBLISHED)
    note: str  # what the figure means on this board
    lesson: str = ""  # the lesson's seconds per frame, as it writes them, where it gives one
    lesson_seconds: float | None = None  # the figure its own benchmark example uses (or the middle of its range)

    @property
    def chips(self) -> int:
        """The board's chips, from the system meshes the tt backend knows (a P300c is tt-metal's P300)."""
        from .presets import SYSTEM_SHAPES

        rows, columns = SYSTEM_SHAPES[self.board.removesuffix("c")][1]
        return rows * columns

    @property
    def published(self) -> float:
        return PUBLISHED[self.measured_on]

    @property
    def published_text(self) -> str:
        """``4.83 s`` on the board tt-metal measured, ``4.83 s (the N150's)`` on another."""
        whose = "" if self.measured_on == self.board else f" (the {self.measured_on}'s)"
        return f"{self.published:.2f} s{whose}"

    @property
    def full_note(self) -> str:
        return f"{self.note} The lesson's text says {self.lesson}." if self.lesson else self.note


FIRST_FRAME = ("A run's first frame takes longer: the kernels compile (the first time; then they are cached) and "
               "the 50-step loop is captured as a trace.")
BOARDS = [
    BoardExpectation("N150", "N150", f"One Wormhole chip. {FIRST_FRAME}", "30–45 s", 35.0),
    BoardExpectation("N300", "N150", "Two Wormhole chips; the demo uses one, so a frame takes an N150's time. "
                     "With both chips busy, two frames are made at once (step 8).", "15–25 s", 20.0),
    BoardExpectation("T3K", "N150", "Eight Wormhole chips (four N300 cards); the demo uses one. With every chip "
                     "busy, up to eight frames at once, until the host (text encoder, PNG writing) is the limit.",
                     "5–10 s", 7.0),
    BoardExpectation("P150", "P150", f"One Blackhole chip. {FIRST_FRAME}"),
    BoardExpectation("P100", "P150", "One Blackhole chip; tt-metal publishes a P150's figure, not a P100's.",
                     "30–45 s", 35.0),
    BoardExpectation("P300c", "P150", "Two Blackhole chips; tt-metal publishes a P150's figure. The demo uses "
                     "one chip; with both busy, two frames are made at once.", "30–45 s", 35.0),
]

CAPTION = (f"Seconds per frame ({SD14_WORK}) after a run's first frame, published by tt-metal ({PUBLISHED_SOURCE}); "
           "not measured by this project. The lesson's own figures, in the notes, are slower; step 8 measures "
           "this machine.")


@dataclass(frozen=True)
class ExpectationTable:
    rows: list[BoardExpectation]

    def __str__(self) -> str:
        lines = [f"{'board':<14}{'chips':>6}  {'s/frame, published by tt-metal':<32}note"]
        lines += [f"{row.board:<14}{row.chips:>6}  {row.published_text:<32}{row.full_note}" for row in self.rows]
        return "\n".join(lines + [CAPTION])

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in
                       ("board", "chips", "seconds per frame, published by tt-metal", "note"))
        rows = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(cell))}</td>" for cell in
                                        (r.board, r.chips, r.published_text, r.full_note)) + "</tr>"
                       for r in self.rows)
        return f"<table><tr>{head}</tr>{rows}</table><p style='font-size:12px'>{html.escape(CAPTION)}</p>"


def per_board() -> ExpectationTable:
    """Per board, tt-metal's published seconds per SD 1.4 frame and what that figure means there."""
    return ExpectationTable(BOARDS)


@dataclass(frozen=True)
class ReferenceSpeed:
    """One point of a frames-per-second chart that this project did not measure."""

    board: str
    devices: int
    seconds_per_image: float
    source: str  # "tt-metal" (its published table) or "lesson" (the lesson's text)


def reference_speeds() -> list[ReferenceSpeed]:
    """The published and the lesson's speeds as points for a frames-per-second chart."""
    published = [ReferenceSpeed(board, 1, seconds, "tt-metal") for board, seconds in PUBLISHED.items()]
    lesson = [ReferenceSpeed(row.board, row.chips, row.lesson_seconds, "lesson")
              for row in BOARDS if row.board in ("N150", "N300", "T3K") and row.lesson_seconds is not None]
    return published + lesson


def estimate_seconds(first_step_seconds: float, steps: int, frames: int) -> float:
    """A render's time from its first denoising step: every step of every frame costs about the same."""
    return first_step_seconds * steps * frames


def long_run_warning(first_step_seconds: float, steps: int, frames: int, where: str) -> str | None:
    """The sentence to show when the render will take longer than ``LONG_RUN_SECONDS``, else None."""
    total = estimate_seconds(first_step_seconds, steps, frames)
    if total < LONG_RUN_SECONDS:
        return None
    frames_text = f"{frames} frame{'s' if frames != 1 else ''}"
    return (f"This will take about {duration(total)} on {where}: the first step took {first_step_seconds:.1f} s, "
            f"and {frames_text} × {steps} steps are to be made. To stop, {how_to_stop()}: finished frames are kept "
            f"and the next run goes on from there. Quicker: {lever('steps', 20)}, {lever('size', 256)}, or "
            f"{lever('model', 'tiny')} to try the path.")


def duration(seconds: float) -> str:
    """``75`` → ``1 min 15 s``, ``5400`` → ``1 h 30 min``, ``0.3`` → ``under a second``."""
    if seconds < 0.5:
        return "under a second"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {seconds} s" if seconds and minutes < 10 else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")
