"""A video's exact frame arithmetic: how many video frames each still gets, so its length is exact: every still
alike at ``fps`` (``plan_timing``), or a walk paced by its keyframes (``plan_timeline``; ``plan_walk`` when the
soundtrack's length sets the pace). Numbers only: no ffmpeg, no files.

Both plans, ``Timing`` and ``Timeline``, give the video's ``rate``, ``frames`` and ``duration`` alike
(``VideoTiming``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING

from ..errors import VideoError

if TYPE_CHECKING:  # a type only: a soundtrack's file is read in its own module
    from .soundtrack import Soundtrack

DEFAULT_FPS = 2.0  # the lesson's pace: each frame shows for half a second
SMOOTH_FPS = 24  # about the rate a crossfaded video is written at
MIN_FPS, MAX_FPS = 0.1, 120.0
MIN_CROSSFADE = 2 / SMOOTH_FPS  # a dissolve needs at least two frames of the smooth video
CROSSFADE_TOLERANCE = 0.001  # a crossfade typed to 3 decimals (0.333) means the exact share (1/3) it rounds
MIN_SECONDS_PER_KEYFRAME, MAX_SECONDS_PER_KEYFRAME = 0.05, 3600.0


@dataclass(frozen=True)
class Timing:
    """A video whose stills all show alike: each of its ``stills`` gets ``per_still`` frames at ``rate`` frames a
    second. ``plan_timing`` plans it before the stills are counted; ``for_stills`` gives it their count."""

    fps: Fraction  # stills per second
    crossfade: Fraction  # seconds of dissolve at the end of each still; 0 for cuts
    rate: Fraction  # frames per second of the video
    per_still: int  # video frames per still
    samples: int = 1  # crossfade: the still is repeated this many times, one dissolve's length apart
    stills: int = 1

    def for_stills(self, stills: int) -> Timing:
        return replace(self, stills=stills)

    @property
    def frames(self) -> int:
        return self.stills * self.per_still

    @property
    def duration(self) -> float:
        return float(self.stills / self.fps)


@dataclass(frozen=True)
class Timeline:
    """A video paced by keyframes: ``counts[i]`` video frames of still i at ``rate``; the last ``dissolve`` of
    them (every still but the last) blend into the next still."""

    rate: Fraction
    counts: tuple[int, ...]
    dissolve: int = 0
    seconds: Fraction = Fraction(0)  # the length asked: keyframes × seconds per keyframe

    @property
    def frames(self) -> int:
        return sum(self.counts)

    @property
    def duration(self) -> float:
        return float(self.frames / self.rate)


# Either plan of a video; both give its frame ``rate``, its ``frames`` and its ``duration`` in seconds.
VideoTiming = Timing | Timeline


def plan_timing(fps: float, crossfade: float = 0.0) -> Timing:
    """The exact frame arithmetic for ``fps`` and ``crossfade``, or a ``VideoError`` naming values that work.

    Cuts: one video frame per still at ``fps``. A crossfade repeats each still ``m`` times, one dissolve apart,
    and blends only between the last copy of a still and the first of the next; so the dissolve must be a whole
    share (1/m) of the time each still shows, and at least two frames of the ~24 fps video long.
    """
    rate = Fraction(fps).limit_denominator(1001)
    if not crossfade:
        return Timing(fps=rate, crossfade=Fraction(0), rate=rate, per_still=1)
    shows = 1 / rate  # seconds each still is on screen
    if shows < MIN_CROSSFADE:
        raise VideoError(f"--crossfade needs --fps {float(1 / MIN_CROSSFADE):g} or less: at --fps {fps:g} each frame "
                         f"shows for {float(shows):.3g} s, shorter than the shortest dissolve "
                         f"({MIN_CROSSFADE:.3f} s, two frames of the {SMOOTH_FPS} fps video); lower --fps or give "
                         "--crossfade 0 (cuts).")
    share = _whole_share(shows, crossfade)
    if share is None:
        raise VideoError(_crossfade_advice(fps, crossfade, shows))
    dissolve = shows / share
    steps = max(2, round(SMOOTH_FPS * dissolve))  # video frames per dissolve
    return Timing(fps=rate, crossfade=dissolve, rate=steps / dissolve, per_still=steps * share, samples=share)


def _crossfade_advice(fps: float, crossfade: float, shows: Fraction) -> str:
    longest_share = int(shows / Fraction(MIN_CROSSFADE).limit_denominator(1000))
    fits = [shows / share for share in range(1, max(1, longest_share) + 1)]
    below = [value for value in fits if value <= crossfade]
    above = [value for value in fits if value > crossfade]
    nearest = ([min(above)] if above else []) + ([max(below)] if below else [])
    choices = " or ".join(_shortest_that_fits(shows, value) for value in sorted(nearest))
    return (f"--crossfade {crossfade:g} does not fit --fps {fps:g}: each frame shows for {float(shows):.3g} s and a "
            f"dissolve must be a whole share of that (1/1, 1/2, 1/3 …) and at least {MIN_CROSSFADE:.3f} s; give "
            f"--crossfade {choices}, or 0 for cuts.")


def _whole_share(shows: Fraction, crossfade: float) -> int | None:
    """m where ``crossfade`` is (within the tolerance) ``shows / m`` and at least the shortest dissolve; else None."""
    if not MIN_CROSSFADE - CROSSFADE_TOLERANCE <= crossfade <= float(shows) + CROSSFADE_TOLERANCE:
        return None
    share = round(float(shows) / crossfade)
    if share < 1 or abs(crossfade - float(shows / share)) > CROSSFADE_TOLERANCE or shows / share < MIN_CROSSFADE:
        return None
    return share


def _shortest_that_fits(shows: Fraction, crossfade: Fraction) -> str:
    """``crossfade`` written with the fewest decimals (3 at least) that still fit: 1/12 s is 0.083 s to the eye,
    but 0.083 is shorter than the shortest dissolve."""
    for digits in range(3, 10):
        text = f"{float(crossfade):.{digits}f}".rstrip("0").rstrip(".")
        if _whole_share(shows, float(text)) is not None:
            return text
    return repr(float(crossfade))


def walk_keyframes(gaps: list[int]) -> tuple[list[int], int]:
    """The frame index of each keyframe of a walk with ``gaps`` in-betweens after each keyframe but the last, and
    the walk's frame count."""
    keyframes = [0]
    for gap in gaps:
        keyframes.append(keyframes[-1] + gap + 1)
    return keyframes, keyframes[-1] + 1


def plan_timeline(keyframes: list[int], count: int, seconds_per_keyframe: float, hold: float | Fraction = 0.0,
                  crossfade: float = 0.0, rate: int | Fraction = SMOOTH_FPS, paced_by: str | None = None) -> Timeline:
    """Video frames per still for a walk paced by its keyframes, or a ``VideoError`` naming what to change.

    Keyframe k (at frame ``keyframes[k]``) holds ``hold`` seconds, then it and the in-betweens after it share
    the rest of ``seconds_per_keyframe`` evenly; the last keyframe shows ``seconds_per_keyframe``. Each still's
    frames are the whole frames between its rounded start and end times, so the total is the asked length
    rounded to one frame of ``rate``. ``crossfade`` dissolves each still into the next over its last frames.
    """
    rate = Fraction(rate)
    pace = Fraction(seconds_per_keyframe).limit_denominator(10_000)
    hold = Fraction(hold).limit_denominator(10_000)
    if not keyframes or keyframes[0] != 0 or keyframes[-1] != count - 1:
        raise VideoError("A walk starts and ends on a keyframe, and these frames do not; render them again with "
                         "ttlesson render (it makes every frame of the walk).")
    if hold >= pace and len(keyframes) > 1:
        where = f"--seconds-per-keyframe {float(pace):g}" if paced_by is None else \
            f"the {float(pace):.3g} s per keyframe set by {paced_by}"
        raise VideoError(f"--hold {float(hold):g} leaves no time for the transition in {where}; give a hold "
                         "shorter than the time per keyframe.")
    durations = [Fraction(0)] * count
    for first, second in zip(keyframes, keyframes[1:]):
        step = (pace - hold) / (second - first)
        durations[first] = hold + step
        durations[first + 1:second] = [step] * (second - first - 1)
    durations[-1] = pace
    shortest = min(durations)
    if shortest < 1 / rate:
        widest = max(second - first for first, second in zip(keyframes, keyframes[1:]))
        need = math.ceil(float(hold + widest / rate) * 100) / 100
        where = f"--seconds-per-keyframe {float(pace):g}" if paced_by is None else \
            f"{float(pace):.3g} s per keyframe, set by {paced_by},"
        fix = f"--seconds-per-keyframe {need:g} or more" if paced_by is None else \
            f"a soundtrack of {need * len(keyframes):g} s or more"
        raise VideoError(f"At {where} a frame of the walk would show for {float(shortest):.3g} s, shorter than one "
                         f"frame of the {rate} fps video; give {fix} (or fewer transition frames, or a shorter "
                         "--hold).")
    ends, elapsed = [0], Fraction(0)
    for duration in durations:
        elapsed += duration
        ends.append(math.floor(elapsed * rate + Fraction(1, 2)))
    counts = tuple(b - a for a, b in zip(ends, ends[1:]))
    dissolve = 0
    if crossfade:
        dissolve = round(crossfade * rate)
        longest = min(counts[:-1], default=0)
        if dissolve < 2 or dissolve > longest:
            # float(): Python 3.10's Fraction takes no format spec
            raise VideoError(f"--crossfade {float(crossfade):g} does not fit this walk's pace: a dissolve takes from "
                             f"{float(2 / rate):.3f} s (two frames of the {rate} fps video) up to the shortest "
                             f"frame's time ({float(longest / rate):.3f} s); give a --crossfade in that range, or 0 "
                             "for cuts.")
    return Timeline(rate=rate, counts=counts, dissolve=dissolve, seconds=pace * len(keyframes))


def plan_walk(keyframes: list[int], count: int, seconds_per_keyframe: float | None, hold: float = 0.0,
              crossfade: float = 0.0, soundtrack: Soundtrack | None = None) -> Timeline:
    """The timeline of a walk paced by ``seconds_per_keyframe``, or by the ``soundtrack``'s length (--fit-audio):
    known before a frame is rendered (the keyframes come from the storyboard), so ``video`` checks it first."""
    if soundtrack is None:
        assert seconds_per_keyframe is not None, "a walk is paced by seconds per keyframe or by a soundtrack"
        return plan_timeline(keyframes, count, seconds_per_keyframe, hold, crossfade)
    pace = soundtrack.duration / len(keyframes)
    if not MIN_SECONDS_PER_KEYFRAME <= pace <= MAX_SECONDS_PER_KEYFRAME:
        bound, fix = (("more than", "a shorter soundtrack or more keyframes") if pace > MAX_SECONDS_PER_KEYFRAME
                      else ("less than", "a longer soundtrack or fewer keyframes"))
        limit = MAX_SECONDS_PER_KEYFRAME if pace > MAX_SECONDS_PER_KEYFRAME else MIN_SECONDS_PER_KEYFRAME
        raise VideoError(f"--audio {soundtrack.path} lasts {soundtrack.duration:g} s, {pace:g} s for each of the "
                         f"{len(keyframes)} keyframes, {bound} the {limit:g} s a keyframe may last; give {fix}, or "
                         "leave --fit-audio out (the sound is then cut or padded to the video).")
    return plan_timeline(keyframes, count, pace, hold, crossfade, paced_by=f"the soundtrack's length (--fit-audio: "
                         f"{soundtrack.duration:g} s of --audio over {len(keyframes)} keyframes)")
