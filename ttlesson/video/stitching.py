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

Commands are built with ffmpeg-python; the result carries the exact command.
"""

from __future__ import annotations

import os
import shutil
from fractions import Fraction
from pathlib import Path

from .. import manifest
from ..errors import VideoError
from ..fileio import resolved_path, staging_folder
from ..inputs import real_number, whole_number
from .encode import DEFAULT_CRF, check_output, encode_into
from .ffmpeg import VideoInfo, ffmpeg_rate, find_ffmpeg
from .soundtrack import Soundtrack, check_audio
from .stills import checked_stills, locate_frames
from .timing import (
    DEFAULT_FPS,
    MAX_FPS,
    MAX_SECONDS_PER_KEYFRAME,
    MIN_FPS,
    MIN_SECONDS_PER_KEYFRAME,
    SMOOTH_FPS,
    Timeline,
    Timing,
    VideoTiming,
    plan_timing,
    plan_walk,
)


def check_settings(fps: float, crf: int, crossfade: float, seconds_per_keyframe: float | None = None,
                   hold: float = 0.0, audio: str | os.PathLike | None = None,
                   fit_audio: bool = False) -> tuple[Timing | None, int, Soundtrack | None]:
    """The timing plan, the CRF and the soundtrack (checked, with its length) for these settings, or one sentence
    saying which value to change and to what.

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
    soundtrack = check_audio(audio) if audio is not None else None
    if seconds_per_keyframe is None and not fit_audio:
        if hold:
            raise VideoError("--hold is part of a keyframe's time; give --seconds-per-keyframe too (or leave --hold "
                             "out).")
        return plan_timing(fps, crossfade), crf, soundtrack
    if seconds_per_keyframe is not None:
        seconds_per_keyframe = real_number(seconds_per_keyframe, "--seconds-per-keyframe", MIN_SECONDS_PER_KEYFRAME,
                                           MAX_SECONDS_PER_KEYFRAME, " seconds", VideoError)
        if hold >= seconds_per_keyframe and hold:
            raise VideoError(f"--hold {hold:g} leaves no time for the transition in --seconds-per-keyframe "
                             f"{seconds_per_keyframe:g}; give a hold shorter than the time per keyframe.")
    return None, crf, soundtrack


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
    uniform, crf, soundtrack = check_settings(fps, crf, crossfade, seconds_per_keyframe, hold, audio, fit_audio)
    # 2. the frames, checked
    frames = locate_frames(source)
    # 3. the output, checked
    target = check_output(output, frames)
    if soundtrack is not None and resolved_path(soundtrack.path) == resolved_path(target):
        raise VideoError(f"--audio {soundtrack.path} is the video's own path; give the soundtrack another file.")
    exe = find_ffmpeg()
    count = checked_stills(frames)
    timing: VideoTiming = uniform.for_stills(count) if uniform is not None else plan_walk(
        frames.keyframes(count), count, seconds_per_keyframe, hold, crossfade, soundtrack if fit_audio else None)
    # 4. ffmpeg into a partial only this process uses
    sequence = None
    try:
        if isinstance(timing, Timeline):
            sequence = staging_folder(target.parent, f"{target.name}.frames")
            _write_sequence(frames.folder, count, timing, sequence)
            stream = _timeline_stream(ffmpeg, sequence, timing)
        else:
            stream = _uniform_stream(ffmpeg, frames.folder, timing)
        # 5. decode and check, then 6. the checked video takes its name
        return encode_into(target, exe, stream, timing.frames, timing.duration, crf, timing.rate, soundtrack)
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

    uniform, crf, _ = check_settings(fps, crf, 0.0)
    assert uniform is not None
    if uniform.fps >= SMOOTH_FPS:
        raise VideoError(f"--fps {fps:g} leaves nothing for minterpolate to invent between stills at "
                         f"{SMOOTH_FPS} fps; give --fps below {SMOOTH_FPS} (the lesson uses 2).")
    frames = locate_frames(source)
    target = check_output(output, frames)
    exe = find_ffmpeg()
    timing = uniform.for_stills(checked_stills(frames))
    want_frames = round(timing.duration * SMOOTH_FPS)
    stream = (_uniform_stream(ffmpeg, frames.folder, timing)
              # minterpolate's film ends where the last frame it is given starts: two more copies of the last still
              # give it its own 1/fps seconds, then -frames:v ends the film there
              .filter("tpad", stop=2, stop_mode="clone")
              .filter("minterpolate", fps=SMOOTH_FPS, mi_mode="mci"))
    return encode_into(target, exe, stream, want_frames, want_frames / SMOOTH_FPS, crf, Fraction(SMOOTH_FPS))


def _uniform_stream(ffmpeg, folder: Path, timing: Timing):
    stream = (ffmpeg.input(str(folder / "frame_%03d.png"), framerate=ffmpeg_rate(timing.fps), start_number=0)
              .trim(end_frame=timing.stills)  # exactly the stills checked, never a stray later file
              .filter("scale", "trunc(iw/2)*2", "trunc(ih/2)*2"))  # yuv420p needs even width and height
    if timing.crossfade:
        # Each still is repeated `samples` times one dissolve apart, then the framerate filter blends between
        # neighbouring copies: only the last copy of a still and the first of the next differ, so each still is
        # held, then dissolves into the next over its last `crossfade` seconds (scene=100: never treat it as a
        # cut). One extra copy of the last still gives its final dissolve-long stretch something to blend with.
        stream = (stream.filter("tpad", stop=1, stop_mode="clone")
                  .filter("fps", fps=ffmpeg_rate(1 / timing.crossfade))
                  .filter("framerate", fps=ffmpeg_rate(timing.rate), scene=100))
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
    return (ffmpeg.input(str(sequence / "seq_%06d.png"), framerate=ffmpeg_rate(timeline.rate), start_number=0)
            .trim(end_frame=timeline.frames)
            .filter("scale", "trunc(iw/2)*2", "trunc(ih/2)*2"))
