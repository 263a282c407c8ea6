"""Writing a video that is checked before it takes its name: the output path checked before anything runs
(``check_output``), ffmpeg's H.264 (and AAC soundtrack) into a partial file only this process uses, the partial
decoded and checked, and only then renamed over the output. On any failure the old video is untouched and the
partial removed."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

from .. import child_processes, manifest
from ..errors import VideoError
from ..fileio import os_error_sentence, partial_path, remove_partials, resolved_path, writable_folder
from ..inputs import user_path
from .ffmpeg import VideoInfo, ffmpeg_failure, ffmpeg_rate, file_header, probe, verify_video
from .soundtrack import Soundtrack
from .stills import FrameSource

DEFAULT_CRF = 18  # visually near-lossless H.264
# Containers that hold H.264, by the file extension that names them (for ffmpeg's -f).
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
MARK = "made by ttlesson"  # written into each video's comment, so a later stitch knows it may replace it
AUDIO_FADE = 1.0  # seconds of fade-out where the soundtrack is cut at the video's end
AUDIO_BITRATE = "192k"


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
    header = file_header(target)
    if not re.search(r"Stream #\S+.*?: Video:", header):
        return False
    return MARK in header or resolved_path(target.parent) == resolved_path(frames.video_dir)


def video_partial(target: Path) -> Path:
    try:
        return partial_path(target, suffix=target.suffix)
    except OSError as err:
        raise VideoError(f"The video cannot be written: {os_error_sentence(err, target.parent)}.") from err


def encode_into(target: Path, exe: str, stream, frames: int, seconds: float, crf: int, rate: Fraction,
                 soundtrack: Soundtrack | None = None) -> VideoInfo:
    """Encode ``stream`` as H.264 into a partial only this process uses, check it has ``frames`` frames lasting
    ``seconds``, and only then give it the name ``target``; the partial is removed on any failure."""
    import ffmpeg

    remove_partials(target.parent, others_only=True)  # what stitches killed outright left behind
    partial = video_partial(target)
    try:
        output = encoded_output(ffmpeg, stream, frames, seconds, soundtrack, crf, partial,
                                CONTAINERS[target.suffix.lower()], ffmpeg_rate(rate))
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
