"""What to expect: seconds per frame per board, and how long a render will take, said before it takes long.

The lesson gives a seconds-per-frame table per board; tt-metal publishes its own numbers for the same demo. They
disagree by about 7×, and neither was measured by this project (it has never run on Tenstorrent silicon), so
both are shown side by side with what explains the gap. A render whose first denoising step says the whole run
will take more than a few minutes (the real SD 1.4 on a CPU: minutes per frame) gets a sentence with the
estimate and how to stop or shorten it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

# Seconds per 512×512 SD 1.4 frame at 50 steps.
PUBLISHED = {"N150": 4.83, "P150": 3.15}  # tt-metal's own performance table (Wormhole n150, Blackhole p150)
SD14_WORK = "SD 1.4, 512×512, 50 steps"
LONG_RUN_SECONDS = 300.0  # estimates above this get the warning


@dataclass(frozen=True)
class BoardExpectation:
    board: str
    chips: int
    lesson: str  # the lesson's seconds per frame, as it writes them
    lesson_seconds: float  # the figure its own benchmark example uses (or the middle of its range)
    published: float | None  # tt-metal's seconds per frame for the same work, where published
    note: str


BOARDS = [
    BoardExpectation("N150", 1, "30–45 s", 35.0, PUBLISHED["N150"],
                     "one Wormhole chip; tt-metal's number is the steady state of its traced 50-step loop"),
    BoardExpectation("N300", 2, "15–25 s", 20.0, PUBLISHED["N150"],
                     "the demo opens one chip whatever the board, so one frame takes an N150's time; two frames at "
                     "once (ttlesson --devices all) would halve the time per frame"),
    BoardExpectation("T3K", 8, "5–10 s", 7.0, PUBLISHED["N150"],
                     "eight chips, but the demo uses one; spread over all eight the time per frame could approach "
                     "an eighth, until the host (text encoder, PNG writing) is the limit"),
    BoardExpectation("P100 / P300c", 1, "30–45 s", 35.0, PUBLISHED["P150"],
                     "Blackhole; tt-metal publishes a P150's number, not a P100's or P300c's; the demo uses one "
                     "chip of a P300c"),
]

WHY_THE_GAP = (
    "The lesson's figures are about 7× tt-metal's own (35 s against 4.83 s per frame on an N150). Neither was "
    "measured by this project. The likely reasons: the lesson's timing includes the per-run costs (loading the "
    "weights, compiling kernels, capturing the trace) or dates from a tt-metal release before the whole 50-step "
    "loop ran as one device trace; tt-metal's table measures the steady state after the trace is captured. And "
    "the lesson's '2× on an N300, 6× on a T3K' needs frames spread over the chips: tt-metal's demo uses one chip "
    "on every board.")


@dataclass(frozen=True)
class ExpectationTable:
    rows: list[BoardExpectation]

    def __str__(self) -> str:
        lines = [f"{'board':<14}{'chips':>6}  {'lesson':<10}{'tt-metal published':<20}ratio"]
        for row in self.rows:
            lines.append(f"{row.board:<14}{row.chips:>6}  {row.lesson:<10}{_published(row):<20}{_ratio(row)}")
        return "\n".join(lines + [f"({SD14_WORK} per frame)", WHY_THE_GAP])

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in
                       ("board", "chips", "lesson: s/frame", "tt-metal published: s/frame", "lesson ÷ published",
                        "why"))
        rows = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(cell))}</td>" for cell in
                                        (r.board, r.chips, r.lesson, _published(r), _ratio(r), r.note)) + "</tr>"
                       for r in self.rows)
        return (f"<table><tr>{head}</tr>{rows}</table><p style='font-size:12px'>{SD14_WORK} per frame; "
                f"not measured by this project.</p><p>{html.escape(WHY_THE_GAP)}</p>")


def per_board() -> ExpectationTable:
    """The lesson's per-board seconds per frame next to tt-metal's published numbers."""
    return ExpectationTable(BOARDS)


def _published(row: BoardExpectation) -> str:
    return f"{row.published:.2f} s" if row.published is not None else "not published"


def _ratio(row: BoardExpectation) -> str:
    return f"{row.lesson_seconds / row.published:.1f}×" if row.published else "–"


@dataclass(frozen=True)
class ReferenceSpeed:
    """One point of a frames-per-second chart that this project did not measure."""

    label: str
    devices: int
    seconds_per_image: float
    source: str  # "tt-metal" (its published table) or "lesson" (the lesson's text)


def reference_speeds() -> list[ReferenceSpeed]:
    """The published and the lesson's speeds as points for a frames-per-second chart."""
    published = [ReferenceSpeed(f"{board}, tt-metal published", 1, seconds, "tt-metal")
                 for board, seconds in PUBLISHED.items()]
    lesson = [ReferenceSpeed(f"{row.board}, lesson text", row.chips, row.lesson_seconds, "lesson")
              for row in BOARDS if row.board in ("N150", "N300", "T3K")]
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
            f"and {frames_text} × {steps} steps are to be made. To stop, interrupt the kernel (the ■ button, or "
            "Ctrl-C in a terminal): finished frames are kept and the next run goes on from there. Quicker: "
            "TTLESSON_STEPS=20, TTLESSON_SIZE=256, or TTLESSON_MODEL=tiny to try the path.")


def duration(seconds: float) -> str:
    """``75`` → ``1 min 15 s``, ``5400`` → ``1 h 30 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {seconds} s" if seconds and minutes < 10 else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")
