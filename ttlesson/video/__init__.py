"""Frames → video with ffmpeg: H.264 in yuv420p (plays everywhere), checked before it takes the video's name.

Reading ``stitch`` top to bottom is the algorithm:

1. check the settings and work out the exact frame arithmetic: how many video frames each still gets, so the
   video's length is exact: for every accepted ``fps``/``crossfade`` pair (``plan_timing``), or, paced by
   keyframes (``seconds_per_keyframe``, a keyframe walk's pace: ``plan_timeline``), to the frame; check the
   soundtrack (``audio``), whose length can set the pace (``fit_audio``);
2. find the frames: a render folder's frames are checked against its manifest (every one present, each with
   the SHA-256 recorded when it was made), a plain folder's PNGs are decoded once to prove they are whole;
3. check the output path (``check_output``): a video name (.mp4, .m4v, .mov, .mkv), not a folder, not an input
   of the render, not a file that is not an earlier ttlesson video;
4. run ffmpeg into a partial file only this process uses; ffmpeg dies with this process (``ttlesson.child_processes``);
   paced by keyframes, ffmpeg reads a hidden sequence of the video's frames (links to the stills, and the
   dissolves' blends), so every still gets exactly its frames; a soundtrack is muxed as AAC, cut with a fade-out
   or padded with silence to the video's length;
5. decode the partial and check codec, pixel format, frame count and length (and the soundtrack's);
6. only then rename it over the output. On any failure the old video is untouched and the partial removed.

``stitch_minterpolate`` makes the lesson's other version from the same frames (ffmpeg's motion interpolation in
place of the dissolve) through the same steps 3 to 6.

The ffmpeg binary is the one on ``PATH``, else the one the ``imageio-ffmpeg`` wheel ships (``IMAGEIO_FFMPEG_EXE``
points that wheel elsewhere). Commands are built with ffmpeg-python; the result carries the exact command.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

from .. import child_processes, manifest
from ..errors import FFmpegNotFoundError, VideoError
from ..fileio import (
    LOCK_NAME,
    folder_lock,
    is_partial_of,
    os_error_sentence,
    partial_path,
    remove_partials,
    resolved_path,
    staging_folder,
    writable_folder,
)
from ..inputs import real_number, user_path, whole_number
from ..presenting import Presentable

DEFAULT_FPS = 2.0  # the lesson's pace: each frame shows for half a second
DEFAULT_CRF = 18  # visually near-lossless H.264
SMOOTH_FPS = 24  # about the rate a crossfaded video is written at
MIN_FPS, MAX_FPS = 0.1, 120.0
MIN_CROSSFADE = 2 / SMOOTH_FPS  # a dissolve needs at least two frames of the smooth video
CROSSFADE_TOLERANCE = 0.001  # a crossfade typed to 3 decimals (0.333) means the exact share (1/3) it rounds
# Containers that hold H.264, by the file extension that names them (for ffmpeg's -f).
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
MARK = "made by ttlesson"  # written into each video's comment, so a later stitch knows it may replace it
MIN_SECONDS_PER_KEYFRAME, MAX_SECONDS_PER_KEYFRAME = 0.05, 3600.0
AUDIO_FADE = 1.0  # seconds of fade-out where the soundtrack is cut at the video's end
AUDIO_BITRATE = "192k"


@dataclass(frozen=True)
class VideoInfo(Presentable):
    path: Path
    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    size_bytes: int
    command: tuple[str, ...] = field(default=(), compare=False)  # the ffmpeg argv that wrote it (stitch only)
    audio: str = ""  # the soundtrack's codec ("aac"); "" when the file has none
    audio_duration: float = 0.0  # seconds of sound, read by decoding it

    @property
    def command_line(self) -> str:
        """The ffmpeg command as one shell line (its output is the partial file, renamed once checked)."""
        return shlex.join(self.command)

    def command_in(self, folder: str | os.PathLike) -> tuple[str, ...]:
        """The command that makes this video when run in ``folder``: the paths under ``folder`` relative to it,
        and the video's own name where ffmpeg wrote the partial file that took that name once checked."""
        base = os.path.abspath(os.path.expanduser(folder))
        own = os.path.abspath(self.path)
        return tuple(_relative(own if is_partial_of(Path(arg), self.path) else arg, base) for arg in self.command)

    @property
    def facts(self) -> str:
        """The video's facts without its path or byte size (stable from machine to machine)."""
        return (f"{self.frames} frames at {self.fps:g} fps = {self.duration:.1f} s, {self.codec}/{self.pix_fmt}, "
                f"{self.width}×{self.height}")

    def __str__(self) -> str:
        sound = f", {self.audio} sound {self.audio_duration:.1f} s" if self.audio else ""
        return (f"{self.path} ({self.codec}, {self.pix_fmt}, {self.width}×{self.height}, {self.frames} frames "
                f"at {self.fps:g} fps = {self.duration:.1f} s{sound}, {self.size_bytes / 1024:.0f} KiB)")


@dataclass(frozen=True)
class Timing:
    """The exact frame arithmetic of a video: each still gets ``per_still`` frames at ``rate`` frames a second."""

    fps: Fraction  # stills per second
    crossfade: Fraction  # seconds of dissolve at the end of each still; 0 for cuts
    rate: Fraction  # frames per second of the video
    per_still: int  # video frames per still
    samples: int = 1  # crossfade: the still is repeated this many times, one dissolve's length apart

    def frames(self, stills: int) -> int:
        return stills * self.per_still

    def duration(self, stills: int) -> float:
        return float(stills / self.fps)


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


@dataclass(frozen=True)
class Soundtrack:
    path: Path
    duration: float  # seconds, as the file's header says


def _relative(arg: str, base: str) -> str:
    """``arg`` relative to the folder ``base`` when it is a path inside it; else as it is."""
    if not os.path.isabs(arg):
        return arg
    inside = os.path.relpath(arg, base)
    return arg if inside.startswith(os.pardir) else inside


def find_ffmpeg() -> str:
    """Path of the ffmpeg binary to use: PATH first, then the one bundled with imageio-ffmpeg."""
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg

        bundled = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        bundled = None
    if bundled and os.path.isfile(bundled) and os.access(bundled, os.X_OK):
        return bundled
    raise FFmpegNotFoundError("ffmpeg was not found on PATH and imageio-ffmpeg has no usable binary; "
                              "install it (sudo apt-get install -y ffmpeg, or pip install imageio-ffmpeg).")


def stitch(source: str | os.PathLike, output: str | os.PathLike | None = None, *, fps: float = DEFAULT_FPS,
           crf: int = DEFAULT_CRF, crossfade: float = 0.0, seconds_per_keyframe: float | None = None,
           hold: float = 0.0, audio: str | os.PathLike | None = None, fit_audio: bool = False) -> VideoInfo:
    """Stitch the frames of a render folder (or a folder of ``frame_NNN.png``) into an H.264 video and check it.

    Each frame shows for ``1/fps`` seconds. ``crossfade`` > 0 dissolves each frame into the next over its last
    ``crossfade`` seconds (the video is then written at about 24 fps); 0 cuts from frame to frame.
    ``seconds_per_keyframe`` paces a keyframe walk instead: each keyframe and the in-betweens after it last that
    long (the keyframe holds ``hold`` seconds, then the in-betweens share the rest evenly), the last keyframe
    too, so the video lasts keyframes × ``seconds_per_keyframe`` to the frame, at 24 fps. ``audio`` muxes a
    soundtrack (AAC), cut with a fade-out or padded with silence to the video's length; ``fit_audio`` sets
    ``seconds_per_keyframe`` so the video lasts as long as the audio. The default output is
    ``<folder>/<storyboard name>.mp4``; the extension of ``output`` picks the container (.mp4, .m4v, .mov, .mkv).
    The video appears under its name only once it has been checked; an earlier video there is replaced only
    then, and only if ttlesson made it. The result's ``command`` is the ffmpeg command that ran.
    """
    import ffmpeg

    # 1. settings, the soundtrack, and exact timing
    timing, crf = check_settings(fps, crf, crossfade, seconds_per_keyframe, hold, audio, fit_audio)
    soundtrack = check_audio(audio) if audio is not None else None
    # 2. the frames, checked
    frames = locate_frames(source)
    # 3. the output, checked
    target = check_output(output, frames)
    if soundtrack is not None and resolved_path(soundtrack.path) == resolved_path(target):
        raise VideoError(f"--audio {soundtrack.path} is the video's own path; give the soundtrack another file.")
    exe = find_ffmpeg()
    count = _checked_stills(frames)
    if timing is None:
        timing = plan_walk(frames.keyframes(count), count, seconds_per_keyframe, hold, crossfade,
                           soundtrack if fit_audio else None)
        want_frames, want_seconds = timing.frames, timing.duration
    else:
        want_frames, want_seconds = timing.frames(count), timing.duration(count)
    # 4. ffmpeg into a partial only this process uses
    sequence = None
    try:
        if isinstance(timing, Timeline):
            sequence = staging_folder(target.parent, f"{target.name}.frames")
            _write_sequence(frames.folder, count, timing, sequence)
            stream = _timeline_stream(ffmpeg, sequence, timing)
        else:
            stream = _uniform_stream(ffmpeg, frames.folder, count, timing)
        # 5. decode and check, then 6. the checked video takes its name
        return _encode_into(target, exe, stream, want_frames, want_seconds, crf, timing.rate, soundtrack)
    finally:
        if sequence is not None:
            shutil.rmtree(sequence, ignore_errors=True)


def stitch_minterpolate(source: str | os.PathLike, output: str | os.PathLike | None = None, *,
                        fps: float = DEFAULT_FPS, crf: int = DEFAULT_CRF) -> VideoInfo:
    """The lesson's "crossfade" (its Customize section): ffmpeg's ``minterpolate=fps=24:mi_mode=mci`` invents
    24 frames a second between the stills by motion compensation, where ``stitch(crossfade=…)`` blends them.

    Where two neighbouring stills differ too much, minterpolate sees a scene change and cuts, halfway between
    them. The lesson's command ends its film where the last still starts (that still never shows, and the film is
    1/fps short); here the last still is held like the others, so the film lasts stills ÷ ``fps``, as
    ``stitch``'s does. Checked like every stitched video: codec, pixel format, frame count and length.
    """
    import ffmpeg

    timing, crf = check_settings(fps, crf, 0.0)
    if timing.fps >= SMOOTH_FPS:
        raise VideoError(f"--fps {fps:g} leaves nothing for minterpolate to invent between stills at "
                         f"{SMOOTH_FPS} fps; give --fps below {SMOOTH_FPS} (the lesson uses 2).")
    frames = locate_frames(source)
    target = check_output(output, frames)
    exe = find_ffmpeg()
    count = _checked_stills(frames)
    want_frames = round(timing.duration(count) * SMOOTH_FPS)
    stream = (_uniform_stream(ffmpeg, frames.folder, count, timing)
              # minterpolate's film ends where the last frame it is given starts: two more copies of the last still
              # give it its own 1/fps seconds, then -frames:v ends the film there
              .filter("tpad", stop=2, stop_mode="clone")
              .filter("minterpolate", fps=SMOOTH_FPS, mi_mode="mci"))
    return _encode_into(target, exe, stream, want_frames, want_frames / SMOOTH_FPS, crf, Fraction(SMOOTH_FPS))


def _checked_stills(frames: FrameSource) -> int:
    """How many stills there are, each checked, once no render is writing them."""
    if frames.render_dir:  # a render started since locate_frames looked
        _not_being_rendered(frames.render_dir)
    return frames.check()


def _encode_into(target: Path, exe: str, stream, frames: int, seconds: float, crf: int, rate: Fraction,
                 soundtrack: Soundtrack | None = None) -> VideoInfo:
    """Encode ``stream`` as H.264 into a partial only this process uses, check it has ``frames`` frames lasting
    ``seconds``, and only then give it the name ``target``; the partial is removed on any failure."""
    import ffmpeg

    remove_partials(target.parent, others_only=True)  # what stitches killed outright left behind
    partial = video_partial(target)
    try:
        output = encoded_output(ffmpeg, stream, frames, seconds, soundtrack, crf, partial,
                                CONTAINERS[target.suffix.lower()], _q(rate))
        command = tuple(ffmpeg.compile(output, cmd=exe, overwrite_output=True))
        info = encode_checked(command, partial, target, lambda made: verify_video(
            made, frames, seconds, target, soundtrack is not None))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return replace(info, path=target, command=command)


def encode_checked(command: tuple[str, ...], partial: Path, target: Path, check: Callable[[VideoInfo], None]
                   ) -> VideoInfo:
    """Run ffmpeg's ``command`` (it writes ``partial``), decode what it made and ``check`` it; only then does the
    video take its name ``target``. The caller removes the partial when this raises."""
    code, _, err = child_processes.run(command)
    if code != 0:
        raise VideoError(ffmpeg_failure(target, err))
    info = probe(partial)
    check(info)
    os.replace(partial, target)
    return info


def video_partial(target: Path) -> Path:
    try:
        return partial_path(target, suffix=target.suffix)
    except OSError as err:
        raise VideoError(f"The video cannot be written: {os_error_sentence(err, target.parent)}.") from err


def check_settings(fps: float, crf: int, crossfade: float, seconds_per_keyframe: float | None = None,
                   hold: float = 0.0, audio: str | os.PathLike | None = None,
                   fit_audio: bool = False) -> tuple[Timing | None, int]:
    """The timing plan and CRF for these settings, or one sentence saying which value to change and to what.

    Paced by keyframes (``seconds_per_keyframe`` or ``fit_audio``), the plan needs the frames and is made by
    ``plan_timeline``: the timing returned is then None, after every value that can be checked alone is."""
    fps = real_number(fps, "--fps", MIN_FPS, MAX_FPS, " frames per second (the lesson uses 2)", VideoError)
    crf = whole_number(crf, "--crf", 0, 51, " (0 is lossless, 51 smallest; 18 is near-lossless)", VideoError)
    crossfade = real_number(crossfade, "--crossfade", 0, 1 / MIN_FPS, " seconds, or 0 for cuts", VideoError)
    hold = real_number(hold, "--hold", 0, MAX_SECONDS_PER_KEYFRAME, " seconds", VideoError)
    if fit_audio and audio is None:
        raise VideoError("--fit-audio paces the video by its soundtrack; add --audio FILE, or leave --fit-audio out.")
    if fit_audio and seconds_per_keyframe is not None:
        raise VideoError("--fit-audio sets the seconds per keyframe from the audio's length; leave "
                         "--seconds-per-keyframe out, or --fit-audio.")
    if audio is not None:
        check_audio(audio)
    if seconds_per_keyframe is None and not fit_audio:
        if hold:
            raise VideoError("--hold is part of a keyframe's time; give --seconds-per-keyframe too (or leave --hold "
                             "out).")
        return plan_timing(fps, crossfade), crf
    if seconds_per_keyframe is not None:
        seconds_per_keyframe = real_number(seconds_per_keyframe, "--seconds-per-keyframe", MIN_SECONDS_PER_KEYFRAME,
                                           MAX_SECONDS_PER_KEYFRAME, " seconds", VideoError)
        if hold >= seconds_per_keyframe and hold:
            raise VideoError(f"--hold {hold:g} leaves no time for the transition in --seconds-per-keyframe "
                             f"{seconds_per_keyframe:g}; give a hold shorter than the time per keyframe.")
    return None, crf


def plan_walk(keyframes: list[int], count: int, seconds_per_keyframe: float | None, hold: float = 0.0,
              crossfade: float = 0.0, soundtrack: Soundtrack | None = None) -> Timeline:
    """The timeline of a walk paced by ``seconds_per_keyframe``, or by the ``soundtrack``'s length (--fit-audio):
    known before a frame is rendered (the keyframes come from the storyboard), so ``video`` checks it first."""
    if soundtrack is None:
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


def walk_keyframes(gaps: list[int]) -> tuple[list[int], int]:
    """The frame index of each keyframe of a walk with ``gaps`` in-betweens after each keyframe but the last, and
    the walk's frame count."""
    keyframes = [0]
    for gap in gaps:
        keyframes.append(keyframes[-1] + gap + 1)
    return keyframes, keyframes[-1] + 1


def plan_timeline(keyframes: list[int], count: int, seconds_per_keyframe: float, hold: float = 0.0,
                  crossfade: float = 0.0, rate: int = SMOOTH_FPS, paced_by: str | None = None) -> Timeline:
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


def check_audio(audio: str | os.PathLike) -> Soundtrack:
    """The soundtrack file checked: it exists and ffmpeg finds an audio stream in it; its length in seconds."""
    path = user_path(audio, "audio=")
    if not path.exists():
        raise VideoError(f"--audio {path} does not exist; give the path of an audio file (.mp3, .wav, .m4a …).")
    if not path.is_file():
        raise VideoError(f"--audio {path} is not a file; give the path of an audio file (.mp3, .wav, .m4a …).")
    try:
        open(path, "rb").close()
    except OSError as err:  # else ffmpeg's failure to open it would read as "no sound"
        raise VideoError(f"--audio {path} cannot be read: {os_error_sentence(err, path, 'read')}.") from err
    header = _header(path)
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", header)
    if not re.search(r"Stream #\S+.*?: Audio:", header) or not duration:
        raise VideoError(f"--audio {path} holds no sound ffmpeg can read; give an audio file (.mp3, .wav, .m4a …).")
    hours, minutes, seconds = duration.groups()
    length = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if length <= 0:
        raise VideoError(f"--audio {path} is empty (0 s of sound); give an audio file with sound in it.")
    return Soundtrack(path, length)


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


# --- the frames ----------------------------------------------------------------------------------------------

@dataclass
class FrameSource:
    """Where the stills are, and how to check them: against a manifest, or by decoding them."""

    folder: Path  # the folder holding frame_000.png …
    video_dir: Path  # where the default video goes
    name: str  # the default video's name, safe
    render_dir: Path | None = None  # the render folder, when there is a manifest
    book: manifest.Manifest | None = None

    def keyframes(self, count: int) -> list[int]:
        """Frame indices of the keyframes: from the manifest, or every frame of a plain folder."""
        return self.book.keyframes if self.book is not None else list(range(count))

    def check(self) -> int:
        """How many stills; raises naming the first frame that is missing, changed or not a whole PNG."""
        if self.book is not None:
            manifest.require_frames(self.render_dir, self.book)
            sizes = {(record.width, record.height) for record in self.book.frames.values()}
            if len(sizes) > 1:
                raise VideoError(f"{self.render_dir}'s frames have {len(sizes)} different sizes; a video needs "
                                 "frames of one size: render them again with one --size (--overwrite).")
            return self.book.frame_count
        return _check_plain_frames(self.folder)


def locate_frames(source: str | os.PathLike) -> FrameSource:
    """The frames of a render folder (or its ``frames/``), or of a plain folder of ``frame_NNN.png``."""
    source = user_path(source, "The frames folder")
    if not source.exists():
        raise VideoError(f"{source} does not exist; give the folder you rendered into (ttlesson render --out).")
    if not source.is_dir():
        raise VideoError(f"{source} is a file; give the folder you rendered into (ttlesson render --out), or a "
                         "folder of frame_000.png, frame_001.png, ….")
    inside_render = source.name == manifest.FRAMES_DIR and any(
        path.exists() for path in (manifest.manifest_path(source.parent), source.parent / LOCK_NAME))
    render_dir = source.parent if inside_render else source
    _not_being_rendered(render_dir)
    frames_dir = manifest.frames_dir(render_dir)
    book = manifest.load(render_dir)
    if book is None:
        if frames_dir.is_dir():  # a render folder whose manifest is gone: its frames are checked by decoding them
            return FrameSource(frames_dir, render_dir, "video")
        return FrameSource(source, source.parent if source.name == manifest.FRAMES_DIR else source, "video")
    if not frames_dir.is_dir():
        raise VideoError(f"{render_dir} has a manifest but no {manifest.FRAMES_DIR}/ folder; run ttlesson render "
                         "again to make the frames, then stitch.")
    if not book.complete:
        missing = book.missing
        raise VideoError(f"{render_dir} holds {book.frame_count - len(missing)} of {book.frame_count} frames "
                         f"({manifest.frame_filename(missing[0])} is missing); run ttlesson render again to finish "
                         "them (it resumes), then stitch." if book.frame_count else
                         f"{render_dir} has no frames yet; render them first (ttlesson render).")
    return FrameSource(frames_dir, render_dir, manifest.safe_name(book.storyboard), render_dir, book)


def _not_being_rendered(folder: Path) -> None:
    """A render running in ``folder`` now would change the frames under ffmpeg: name it, before its half-made
    frames are judged. Only a folder a render has used has the lock file; no other gets one."""
    if (folder / LOCK_NAME).exists():
        with folder_lock(folder, "wait for it to finish, then stitch."):
            pass


def _check_plain_frames(folder: Path) -> int:
    """Frames of a folder without a manifest: frame_000.png, frame_001.png, … without a gap, whole PNGs of one size."""
    from PIL import Image

    indices = manifest.frame_indices(folder)
    if not indices:
        raise VideoError(f"{folder} has no frame_000.png, frame_001.png, … to stitch; render frames first "
                         "(ttlesson render) or name your images that way.")
    gap = next((expected for expected, found in enumerate(indices) if expected != found), None)
    if gap is not None:
        raise VideoError(f"{folder} has no {manifest.frame_filename(gap)}, so the frames after it would be "
                         "dropped; render or rename frames so they are numbered without a gap.")
    sizes = {}
    for index in indices:
        path = folder / manifest.frame_filename(index)
        try:
            with Image.open(path) as image:
                kind, size = image.format, image.size
                image.load()  # decodes every byte: a truncated file fails here, not in ffmpeg
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise VideoError(f"{path} is not a whole image (truncated or damaged); render it again or replace it.") \
                from err
        if kind != "PNG":
            raise VideoError(f"{path} is a {kind} file named .png; save it as a real PNG (or render it again).")
        sizes.setdefault(size, path)
    if len(sizes) > 1:
        (first, _), (other, other_path) = list(sizes.items())[:2]
        raise VideoError(f"{other_path} is {other[0]}×{other[1]} but earlier frames are {first[0]}×{first[1]}; "
                         "a video needs frames of one size.")
    return len(indices)


# --- the output ----------------------------------------------------------------------------------------------

def check_output(output: str | os.PathLike | None, frames: FrameSource) -> Path:
    """The path the video will take, checked before anything runs; one sentence when it must not be used."""
    target = user_path(output, "output=") if output is not None else frames.video_dir / f"{frames.name}.mp4"
    flag = "--output" if output else "The video's path"
    if target.is_dir():
        raise VideoError(f"{flag} {target} is a folder; give a file name such as {target / 'video.mp4'}.")
    if target.suffix.lower() not in CONTAINERS:
        kind = f"a {target.suffix} file" if target.suffix else "a name without an extension"
        raise VideoError(f"{flag} {target} is {kind}, which cannot hold the H.264 video ttlesson writes; give a "
                         "name ending in .mp4 (or .m4v, .mov, .mkv).")
    resolved = resolved_path(target)
    inputs = [resolved_path(frames.folder)] + ([resolved_path(frames.render_dir)] if frames.render_dir else [])
    # A render's frames/ holds frames only; a plain folder may hold its video (a frame's name is never a video's).
    among = resolved.parent == inputs[0] and frames.render_dir is not None
    if among or resolved in inputs or \
            (frames.render_dir and resolved == resolved_path(manifest.manifest_path(frames.render_dir))):
        raise VideoError(f"{flag} {target} is among the frames the video is made from; choose a path outside "
                         f"{frames.folder}.")
    if target.exists() or target.is_symlink():
        if not _replaceable(target, frames):
            raise VideoError(f"{flag} {target} already exists and is not a video ttlesson made, so it is not "
                             "replaced; choose another name or move that file away.")
    writable_folder(target.parent, f"{flag}'s folder")
    return target


def _replaceable(target: Path, frames: FrameSource) -> bool:
    """An existing file may be replaced when it is a video ttlesson made, or a video in this render's folder."""
    if not target.is_file():
        return False
    header = _header(target)
    if not re.search(r"Stream #\S+.*?: Video:", header):
        return False
    return MARK in header or resolved_path(target.parent) == resolved_path(frames.video_dir)


def _header(path: Path) -> str:
    """What ffmpeg says about a file's container and streams, without decoding it ("" if it cannot say)."""
    try:
        _, _, err = child_processes.run([find_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path)])
    except OSError:
        return ""
    return err.decode("utf-8", "replace")


# --- ffmpeg --------------------------------------------------------------------------------------------------

def _uniform_stream(ffmpeg, folder: Path, count: int, timing: Timing):
    stream = (ffmpeg.input(str(folder / "frame_%03d.png"), framerate=_q(timing.fps), start_number=0)
              .trim(end_frame=count)  # exactly the stills checked, never a stray later file
              .filter("scale", "trunc(iw/2)*2", "trunc(ih/2)*2"))  # yuv420p needs even width and height
    if timing.crossfade:
        # Each still is repeated `samples` times one dissolve apart, then the framerate filter blends between
        # neighbouring copies: only the last copy of a still and the first of the next differ, so each still is
        # held, then dissolves into the next over its last `crossfade` seconds (scene=100: never treat it as a
        # cut). One extra copy of the last still gives its final dissolve-long stretch something to blend with.
        stream = (stream.filter("tpad", stop=1, stop_mode="clone")
                  .filter("fps", fps=_q(1 / timing.crossfade))
                  .filter("framerate", fps=_q(timing.rate), scene=100))
    return stream


def _write_sequence(folder: Path, count: int, timeline: Timeline, into: Path) -> None:
    """The video's frames as ``into/seq_000000.png …``: links to the stills, and the dissolves' blends."""
    from PIL import Image

    number = 0
    for still, frames in enumerate(timeline.counts):
        path = folder / manifest.frame_filename(still)
        blends = timeline.dissolve if still < count - 1 else 0
        for _ in range(frames - blends):
            _link(path, into / f"seq_{number:06d}.png")
            number += 1
        if blends:
            with Image.open(path) as this, Image.open(folder / manifest.frame_filename(still + 1)) as after:
                this, after = this.convert("RGB"), after.convert("RGB")
                for j in range(1, blends + 1):
                    Image.blend(this, after, j / (blends + 1)).save(into / f"seq_{number:06d}.png", compress_level=1)
                    number += 1


def _link(source: Path, link: Path) -> None:
    try:
        os.link(source, link)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(source, link)


def _timeline_stream(ffmpeg, sequence: Path, timeline: Timeline):
    return (ffmpeg.input(str(sequence / "seq_%06d.png"), framerate=_q(timeline.rate), start_number=0)
            .trim(end_frame=timeline.frames)
            .filter("scale", "trunc(iw/2)*2", "trunc(ih/2)*2"))


def encoded_output(ffmpeg, video, frames: int, seconds: float, soundtrack: Soundtrack | None, crf: int, partial: Path,
            container: str, rate: str):
    """The H.264 output, with the soundtrack cut (fading out over its last second) or padded to ``seconds``."""
    streams = [video]
    options = {"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": crf, "r": rate, "format": container,
               "frames:v": frames, "metadata": f"comment={MARK}"}
    if soundtrack is not None:
        sound = ffmpeg.input(str(soundtrack.path)).audio
        if soundtrack.duration > seconds:
            fade = min(AUDIO_FADE, seconds / 2)
            sound = sound.filter("afade", t="out", st=f"{seconds - fade:.6f}", d=f"{fade:.6f}")
        sound = sound.filter("apad").filter("atrim", end=f"{seconds:.6f}")
        streams.append(sound)
        options.update({"acodec": "aac", "audio_bitrate": AUDIO_BITRATE})
    if container in ("mp4", "mov"):
        options["movflags"] = "+faststart"
    return ffmpeg.output(*streams, str(partial), **options)


def _q(value: Fraction) -> str:
    """A rate as ffmpeg reads it exactly: ``24``, ``5/2``, ``30000/1001``."""
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def ffmpeg_failure(target: Path, stderr: bytes | None) -> str:
    said = _last_line(stderr)
    if "No space left on device" in (stderr or b"").decode("utf-8", "replace"):
        return f"ffmpeg could not write {target}: the disk holding it is full; free some space or give --output on " \
               "another disk (the earlier video, if any, is untouched)."
    return f"ffmpeg could not write {target}: {said} (the earlier video, if any, is untouched)."


def probe(path: str | os.PathLike) -> VideoInfo:
    """Codec, pixel format, size, frame rate, frame count and duration of a video, read by decoding it."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path} is not a file; give the path of a video.")
    code, _, err = child_processes.run([find_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path), "-f", "null", "-"])
    if code != 0:
        raise VideoError(f"{path} is not a video ffmpeg can read: {_last_line(err)}")
    log = err.decode("utf-8", "replace")
    stream = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\w+)(?:\([^)]*\))?, (\d+)x(\d+).*?, ([\d.]+) fps", log)
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", log)
    frames = re.findall(r"frame=\s*(\d+)", log)
    if not (stream and duration and frames):
        raise VideoError(f"ffmpeg's report on {path} could not be read; play the file to check it.")
    hours, minutes, seconds = duration.groups()
    sound = re.search(r"Stream #\S+.*?: Audio: (\w+)", log)
    return VideoInfo(path=path, codec=stream.group(1), pix_fmt=stream.group(2), width=int(stream.group(3)),
                     height=int(stream.group(4)), fps=float(stream.group(5)), frames=int(frames[-1]),
                     duration=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
                     size_bytes=path.stat().st_size, audio=sound.group(1) if sound else "",
                     audio_duration=_audio_seconds(path) if sound else 0.0)


def _audio_seconds(path: Path) -> float:
    """Seconds of sound in ``path``'s first audio stream, by decoding it."""
    code, _, err = child_processes.run([find_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a:0",
                                 "-f", "null", "-"])
    times = re.findall(r"time=(\d+):(\d+):([\d.]+)", err.decode("utf-8", "replace"))
    if code != 0 or not times:
        return 0.0
    hours, minutes, seconds = times[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def verify_video(info: VideoInfo, frames: int, duration: float, target: Path, sound: bool = False) -> None:
    problems = []
    if sound and info.audio != "aac":
        problems.append("no AAC soundtrack" if not info.audio else f"soundtrack {info.audio}, not aac")
    if sound and abs(info.audio_duration - duration) > 0.05:  # AAC is coded in frames of 1024 samples
        problems.append(f"{info.audio_duration:.2f} s of sound, not {duration:.2f} s")
    if info.codec != "h264":
        problems.append(f"codec {info.codec}, not h264")
    if info.pix_fmt != "yuv420p":
        problems.append(f"pixel format {info.pix_fmt}, not yuv420p")
    if info.frames != frames:
        problems.append(f"{info.frames} frames, not {frames}")
    if abs(info.duration - duration) > 0.5 / max(info.fps, 1e-9) + 0.005:  # ffmpeg prints durations to 0.01 s
        problems.append(f"{info.duration:.2f} s long, not {duration:.2f} s")
    if problems:
        raise VideoError(f"ffmpeg's video for {target} came out wrong ({'; '.join(problems)}), so it was not kept "
                         f"(the earlier video, if any, is untouched); this is a ttlesson or ffmpeg bug: please "
                         f"report it with the ffmpeg in use ({find_ffmpeg()}).")


def _last_line(stderr: bytes | None) -> str:
    lines = (stderr or b"").decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no error message"
